"""Files that are written whole or not at all, JSON lines read back
whatever a kill left of them, the lock that keeps a run folder to one
training process, and what a run folder's name and summary say. Standard
library only: readers of a run folder (load_policy, Result.load) import no
Hydra."""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = [
    "LOCK_FILE", "FolderLock", "folder_path", "json_text", "read_jsonl", "read_summary", "refuse_multirun_folder",
    "run_files", "run_name", "stopped_resumably", "write_atomically", "WATCH_STATE_FILE",
]

LOCK_FILE = ".lock"
"""In a run folder: locked while a process trains there; it names that process."""
WATCH_STATE_FILE = ".jaxrl-watch.json"
"""jaxrl.watch's memory of the runs it follows, by default in the first folder it watches: a run
folder watched before its run starts holds it, and is still new to the trainer (`run_files`)."""


def run_files(folder: Path) -> list[Path]:
    """What `folder` holds of a run: its entries but the lock and jaxrl.watch's state file
    (and that file's `write_atomically` copy being written)."""
    others = {LOCK_FILE, WATCH_STATE_FILE, f".{WATCH_STATE_FILE}.tmp"}
    return [p for p in folder.iterdir() if p.name not in others]


def folder_path(value: Any) -> Path:
    """A run folder argument as a Path, "~" expanded as the trainer's `run_dir=`
    does; a TypeError naming the value for anything but a str or os.PathLike
    (pathlib's own says neither which argument nor what it got)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"run_dir={value!r} ({type(value).__name__}): run_dir takes a run folder's path, a str or Path")
    return Path(value).expanduser()


def run_name(run_dir: Path) -> str:
    """The name sinks know a run by (W&B's group, its runs' and artifacts'
    names, alert titles): the run folder's name, but `<sweep folder>-<n>` for
    a multirun job's folder `<sweep folder>/<n>`, e.g. "multirun-20261205-213000-0":
    every multirun has a job "0", and W&B would group them and version their
    checkpoints as one."""
    return f"{run_dir.absolute().parent.name}-{run_dir.name}" if run_dir.name.isdigit() else run_dir.name


def refuse_multirun_folder(folder: Path) -> None:
    """FileNotFoundError naming the jobs when `folder` is a multirun's folder
    (run folders `<folder>/<n>`) rather than a run folder: a reader of one run
    would otherwise take the multirun's own summary.json for a run's."""
    jobs = sorted((p for p in folder.glob("*/config.yaml") if p.parent.name.isdigit()), key=lambda p: int(p.parent.name))
    if jobs and not (folder / "config.yaml").exists():
        names = ", ".join(p.parent.name for p in jobs[:8]) + (", ..." if len(jobs) > 8 else "")
        raise FileNotFoundError(
            f"{folder} is a Hydra multirun's folder, not a run folder; give one of its jobs' run folders, "
            f"{folder}/<job> (jobs: {names})"
        )


def stopped_resumably(summary: dict[str, Any] | None) -> bool:
    """Whether a run's summary says it stopped early and a resume goes on with it: a signal or an
    alert stopped it, not on NaN/inf values (`bad_state`, which a resume would replay)."""
    return bool(summary) and summary.get("status") == "stopped" and not summary.get("bad_state")


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary.json ({} while a run is going or after a kill)."""
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def json_text(data: Any) -> str:
    """`data` as standard JSON, indented, with a final newline: NaN and
    infinities become null, as in metrics.jsonl (strict parsers, JavaScript's
    and Go's among them, reject the NaN that Python's json writes)."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(data), indent=2, allow_nan=False) + "\n"


def write_atomically(path: Path, data: str | bytes) -> None:
    """Writes `data` to `path` through a temporary file beside it that is
    renamed when complete, so a reader (jaxrl.watch, an uploader) or a kill
    never sees half a file and the previous content survives a failure. On
    failure (a full disk) the temporary file is removed and the OSError raised.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (metrics.jsonl), in order. A
    process killed mid-write leaves a torn last line: it and any other line
    that is not a whole JSON object are skipped, the rest is good."""
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


class FolderLock:
    """The exclusive lock a process holds on a run folder while it trains
    there, so that a second process (a `resume=auto` in another terminal or
    job) cannot train into it too. It is the kernel's `flock` on
    `<folder>/.lock`: it ends with its process however that ends (a SIGKILL,
    a crash), so a killed run is never left locked; on network storage it
    holds across machines where the file system supports locks (NFSv4 does;
    there a dead client's lock lasts until its lease expires, about 90 s).

    Use as a context manager: leaving it releases the lock (a notebook may
    resume the same folder later in the same process).
    """

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self._file: IO[str] | None = None

    def take(self) -> str | None:
        """Takes the lock (the folder must exist); None when this holds it
        now, else the holder's "pid N on HOST". On a file system that cannot
        lock (some FUSE mounts of object storage), a warning says so and the
        folder is used unlocked: None."""
        try:
            return self._take(sign=True)
        except PermissionError:
            raise
        except OSError as err:
            warnings.warn(
                f"{self.path.parent} cannot be locked ({err.strerror or err}); nothing keeps a second process "
                "from training in it",
                stacklevel=2,
            )
            return None

    def _take(self, sign: bool) -> str | None:
        """`take`, raising the OSError of a file system that cannot lock;
        `sign`: write this process's name into the file once it holds it."""
        if self._file is not None:
            return None
        try:
            file = self.path.open("a+", encoding="utf-8")
        except PermissionError:
            # another user's lock file: flock needs no write access to it
            file, sign = self.path.open(encoding="utf-8"), False
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip()
            file.close()
            return holder or "another process"
        except OSError:
            file.close()
            raise
        if sign:
            file.truncate(0)
            file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            file.flush()
        self._file = file
        return None

    def release(self) -> None:
        """Releases the lock if this holds it; the file stays (removing it would race a taker)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def holder(self) -> str | None:
        """The "pid N on HOST" training in the folder now, or None: none,
        or none that can be told (the lock is then left free)."""
        if not self.path.is_file():
            return None
        try:
            holder = self._take(sign=False)
        except OSError:
            return None
        self.release()
        return holder

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
