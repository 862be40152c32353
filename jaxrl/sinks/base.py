"""The sink interface: where metrics go, on the host, between jitted chunks,
and the guarded fan-out the runner writes through."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

__all__ = ["FanOut", "RunInfo", "Sink"]


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a sink needs to know about a run when it opens.

    run_dir: the run folder (exists when sinks open).
    name: the run's name (`jaxrl.files.run_name`: the folder's name, with
        its sweep folder's for a multirun job); sinks group members under it.
    algo, env: the algorithm and environment names, e.g. "ppo", "mountaincar_continuous".
    config: the resolved configuration as plain Python containers.
    members: one dict per trained population member, in the order of the
        rows given to `log`: {"seed": int} plus, in a sweep, the member's
        hyperparameter values, e.g. {"seed": 0, "algo.lr": 0.0003}.
    total_steps: env steps per member the run is going to take.
    start_step: env steps per member done before this session: a resumed
        run's checkpoint, else 0.
    last_evaluation: a resumed run's metrics.jsonl rows (one per member: the
        metrics as given to `log`, with step, member and seed) of its newest
        evaluated point up to `start_step`, so that a sink can show it until
        this session evaluates; empty for a new run.
    """

    run_dir: Path
    name: str
    algo: str
    env: str
    config: dict[str, Any]
    members: list[dict[str, Any]]
    total_steps: int
    start_step: int = 0
    last_evaluation: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class Sink:
    """A metrics consumer. Every method is optional: the defaults do nothing.

    A sink may raise for its own failures (a dead network, a full disk):
    `FanOut` turns the first one into a warning and stops calling that sink,
    so no sink can stop training, unless the sink is `essential`.
    """

    # the run's own record (metrics.jsonl): a run that cannot keep it fails (its
    # checkpoints stay, and a resume logs again from the newest one) rather than
    # end "finished" with rows missing for good
    essential: bool = False

    def open(self, run: RunInfo) -> None:
        """Called once before training starts."""

    def log(self, step: int, rows: list[dict[str, float]]) -> None:
        """One logged point: `step` env steps per member; `rows[i]` holds member
        i's metrics as plain floats, keyed like "train/episode_return",
        "loss/policy", "eval/return_mean", "perf/sps"."""

    def log_video(self, step: int, member: int, path: Path) -> None:
        """A video of member `member`'s policy (an mp4 file) at `step`."""

    def log_image(self, step: int, member: int, key: str, path: Path) -> None:
        """An image file (e.g. curves.png) under `key` for member `member` at `step`."""

    def log_artifact(self, step: int, kind: str, path: Path, aliases: list[str]) -> None:
        """A complete file or folder to keep with the run at `step`: kind
        "checkpoint" (a checkpoint folder) or "policy" (the policy file),
        tagged with `aliases` such as "latest", "step-<N>", "final"."""

    def alert(self, title: str, text: str, level: str, member: int | None = None) -> None:
        """An alert (`jaxrl.alerts`, the "wandb" channel) about member `member`
        (None: the whole run); `level` is info, warn or error. Called from the
        alerts' delivery thread, which handles a failure."""

    def close(self, summary: dict[str, Any]) -> None:
        """Called once at the end with the run's summary (the `summary.json`
        content: per-member lists under "final"). Its "status" is "finished",
        or "stopped" (with "reason"), "interrupted" or "failed" (with "error": "<type>: <message>") when
        training stopped early; "env_steps" and "final" then hold what was done.
        Also called for a sink whose `open` was not reached."""


class FanOut:
    """Calls every sink in turn; a sink that raises is reported once, as a
    warning naming it, and is left out from then on (its `close` is still
    attempted, so it can release what it holds). An `essential` sink's error
    is raised, except from `close`, which must not hide how the run ended."""

    def __init__(self, sinks: list[Sink]):
        self.sinks = list(sinks)
        self._broken: set[int] = set()

    def _each(self, method: str, *args: Any, always: bool = False) -> None:
        for i, sink in enumerate(self.sinks):
            if i in self._broken and not always:
                continue
            try:
                getattr(sink, method)(*args)
            except Exception as err:  # noqa: BLE001 (a sink is never worth a lost run)
                if sink.essential and method != "close":
                    raise
                if i not in self._broken:
                    self._broken.add(i)
                    warnings.warn(
                        f"{type(sink).__name__} is off for the rest of this run: its {method} failed "
                        f"({type(err).__name__}: {err}). Training goes on.",
                        RuntimeWarning,
                        stacklevel=3,
                    )

    def open(self, run: RunInfo) -> None:
        """`open` on every sink."""
        self._each("open", run)

    def log(self, step: int, rows: list[dict[str, float]]) -> None:
        """`log` on every working sink."""
        self._each("log", step, rows)

    def log_video(self, step: int, member: int, path: Path) -> None:
        """`log_video` on every working sink."""
        self._each("log_video", step, member, path)

    def log_image(self, step: int, member: int, key: str, path: Path) -> None:
        """`log_image` on every working sink."""
        self._each("log_image", step, member, key, path)

    def log_artifact(self, step: int, kind: str, path: Path, aliases: list[str]) -> None:
        """`log_artifact` on every working sink."""
        self._each("log_artifact", step, kind, path, aliases)

    def close(self, summary: dict[str, Any]) -> None:
        """`close` on every sink, failed ones included."""
        self._each("close", summary, always=True)
