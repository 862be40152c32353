"""metrics.jsonl: one JSON object per logged point and population member."""

from __future__ import annotations

import json
import math
from typing import Any

from jaxrl.sinks.base import RunInfo, Sink


class JsonlSink(Sink):
    """Appends rows to `<run_dir>/metrics.jsonl`, flushed at every point so a
    crash or a kill loses nothing already logged. Non-finite values are written
    as null (JSON has no NaN). Essential: a write that fails (a full disk) fails
    the run."""

    def __init__(self, essential: bool = True) -> None:
        self.essential = essential  # False where the file is thrown away (`jaxrl.train._train_quietly`)
        self._file = None
        self._members: list[dict[str, Any]] = []
        self._failed = False

    def open(self, run: RunInfo) -> None:
        """Opens the file for appending (a resumed run continues it)."""
        self._members = run.members
        self._file = open(run.run_dir / "metrics.jsonl", "a", encoding="utf-8")

    def log(self, step: int, rows: list[dict[str, float]]) -> None:
        """Writes one line per member: {"step", "member", "seed", sweep values..., metrics...}.
        Raises OSError naming the file when the write fails."""
        try:
            for index, (member, row) in enumerate(zip(self._members, rows)):
                values = {k: (v if math.isfinite(v) else None) for k, v in row.items()}
                self._file.write(json.dumps({"step": step, "member": index, **member, **values}) + "\n")
            self._file.flush()
        except OSError as err:
            self._failed = True
            said = f"could not write {self._file.name} at step {step}: {err.strerror or err}"
            raise (OSError(err.errno, said) if err.errno is not None else OSError(said)) from err

    def close(self, summary: dict[str, Any]) -> None:
        """Closes the file. After a failed write, which failed the run, a close
        whose flush of the buffered rows fails again is not an error."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError:
            if not self._failed:
                raise
