"""Checkpoints of the whole training state, resuming from them, and stopping
cleanly when the machine is about to go away.

A checkpoint holds everything a run needs to go on exactly where it stopped:
the population's training states (params, optimiser states, env states,
normaliser statistics, replay buffers, PRNG keys, counters, hyperparameters:
one pytree with a leading [P] member axis), the evaluation keys, and the
loop's `Position` (chunks done, timings, last evaluation). orbax's
CheckpointManager writes each into `<run_dir>/checkpoints/<env step>/`
through a temporary folder renamed when complete, so a reader never sees a
partial checkpoint, and keeps the newest `checkpoint.keep`.

Everything here runs on the host between jitted chunks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrl.config import CheckpointConfig
from jaxrl.errors import last_line
from jaxrl.sinks.base import FanOut

__all__ = ["CHECKPOINTS", "Checkpointer", "Position", "StopOnSignal", "is_temporary", "newest_checkpoint_step"]

CHECKPOINTS = "checkpoints"
"""The run folder's subfolder of checkpoints, one folder per saved env step."""

# Names of files still being written: orbax's "<step>.orbax-checkpoint-tmp-<time>",
# tensorstore's "*.tempstate*", jaxrl's own "<file>.tmp". Never uploaded or read.
_ORBAX_TEMPORARY = ".orbax-checkpoint-tmp"
_TEMPORARY_MARKS = (_ORBAX_TEMPORARY, "tempstate", ".tmp")
# How long a failed save's leftover must stay away before it counts as removed (`remove_partial`)
_STRAGGLERS_S = 0.5


def is_temporary(path: Path) -> bool:
    """Whether `path` (or a folder it sits in) is a file still being written."""
    return any(mark in part for part in path.parts for mark in _TEMPORARY_MARKS)


def newest_checkpoint_step(run_dir: Path) -> int | None:
    """The env step of the newest complete checkpoint in `run_dir` (None: it holds none), read from
    the names alone (orbax names each by its env step; one being written carries a temporary mark),
    without opening orbax."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return None
    return max((int(p.name) for p in folder.iterdir() if p.name.isdigit() and not is_temporary(p)), default=None)


@dataclasses.dataclass(frozen=True)
class Position:
    """Where the loop stands after a chunk, beside the training states.

    chunks_done: chunks trained so far; updates_per_chunk: the run's chunk
    length (kept on resume, so chunks line up with the uninterrupted run);
    env_steps: env steps per member so far; train_s, wall_s: seconds spent
    in chunks / in the run so far, over every session; final: the last
    evaluation, {"eval/return_mean": [P floats], ...}; sessions: how many
    processes trained this run; sized_for: the env steps per member the
    training state is sized for (`Schedule.sized_for`, kept on resume; None
    in checkpoints older than the field); hooks: the hooks' `state()` as of
    this step, by `jaxrl.runner.hook_states`'s names (alert rules' streaks).
    """

    chunks_done: int
    updates_per_chunk: int
    env_steps: int
    train_s: float
    wall_s: float
    final: dict[str, list[float]]
    sessions: int = 1
    sized_for: int | None = None
    hooks: dict[str, Any] = dataclasses.field(default_factory=dict)


def _read_position(saved: dict[str, Any]) -> Position:
    """A checkpoint's Position; fields a newer jaxrl added are left out, so that this
    version can still resume its runs (fields added later have defaults, for older checkpoints)."""
    known = {field.name for field in dataclasses.fields(Position)}
    return Position(**{key: value for key, value in saved.items() if key in known})


def _why_unreadable(err: BaseException) -> str:
    """The first line of the innermost cause of a failed read, at most 300
    characters: orbax wraps tensorstore's error ("OUT_OF_RANGE: Error reading
    <array> ... at <file>") in one whose last line is the tail of a dumped spec."""
    while err.__cause__ is not None or (err.__context__ is not None and not err.__suppress_context__):
        err = err.__cause__ or err.__context__
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"


@functools.cache
def _quiet_orbax_leftovers() -> None:
    """Drops the unraisable errors that a failed orbax read or write leaves:
    `RuntimeError: Event loop is closed` from each tensorstore callback still
    in flight once orbax has closed its event loop, and orbax's own coroutines
    closed unawaited; and asyncio's "exception was never retrieved" for its
    failed writes, logged whenever the event loop's thread lets go of them,
    which may be after `_orbax_logs_held_back` ended. A damaged checkpoint gave
    thousands of lines of them, around the one-line warning, that read like a
    crash of the resume; the failure itself is what `save` and `restore`
    report. Other unraisable errors and asyncio records go on as before.
    Installed once, at the first save or restore."""
    previous = sys.unraisablehook

    def from_orbax(record: logging.LogRecord) -> bool:
        # raised in orbax's code, or by tensorstore (no Python frames) writing a temporary checkpoint
        error, trace = record.exc_info[1:] if record.exc_info else (None, None)
        return (_ORBAX_TEMPORARY in str(error)
                or any("orbax" in Path(frame.f_code.co_filename).parts for frame, _ in traceback.walk_tb(trace)))

    logging.getLogger("asyncio").addFilter(lambda record: not from_orbax(record))
    # the same writes' coroutines, collected only when the interpreter exits
    warnings.filterwarnings("ignore", r"coroutine 'async_serialize_from_host\.", RuntimeWarning)

    def hook(unraisable: Any) -> None:
        error, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
        closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
        if not (closed_loop or (code is not None and "orbax" in Path(code.co_filename).parts)):
            previous(unraisable)

    sys.unraisablehook = hook


@contextlib.contextmanager
def _orbax_logs_held_back() -> Iterator[None]:
    """Holds back orbax's own error logs (absl's and asyncio's loggers, and
    its event loop's closed-loop callbacks) while it saves or restores: the
    caller tells a failed save (a full disk) or read (a damaged checkpoint)
    in one line, which orbax's threads would bury under a traceback per array."""
    _quiet_orbax_leftovers()
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        # the failed tasks log "exception was never retrieved" when collected: now, while held back
        gc.collect()
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _not_a_missing_metadata_file(record: logging.LogRecord) -> bool:
    """False for orbax's warning about a step folder without its metadata file,
    which it repeats each time it lists the steps: that folder is a checkpoint
    a kill cut short, or a damaged one, which `restore` reports in one line."""
    return not record.getMessage().startswith("Metadata file does not exist")


def _manager(directory: Path, keep: int) -> Any:
    import orbax.checkpoint as ocp

    # orbax logs every save at INFO through absl; a run's console is for metrics
    logging.getLogger("absl").setLevel(logging.WARNING)
    logging.getLogger("absl").addFilter(_not_a_missing_metadata_file)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True)
    if jax.process_count() > 1:
        # distributed=true: only process 0 writes, and orbax must not wait at
        # barriers for the others (it then leaves making the folder to us)
        directory.mkdir(parents=True, exist_ok=True)
        only_this = ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()}
        )
        options = dataclasses.replace(options, create=False, multiprocessing_options=only_this)
    return ocp.CheckpointManager(directory.absolute(), options=options)


def _without_empty(tree: Any) -> Any:
    """`tree` with its zero-size leaves (a MuJoCo model without actuator
    activations has `act` [P, num_envs, 0]) replaced by None: orbax refuses to save them,
    and they hold no data."""
    return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def _with_empty(abstract: Any, restored: Any) -> Any:
    """Puts back the zero-size leaves `_without_empty` left out, as zeros of the
    shapes, dtypes and shardings in `abstract`."""

    def fill(shape: Any, got: Any) -> Any:
        if got is not None:
            return got
        return jax.numpy.zeros(shape.shape, shape.dtype, device=getattr(shape, "sharding", None))

    return jax.tree.map(fill, abstract, restored)


class Checkpointer:
    """Saves and restores a run's checkpoints in `<run_dir>/checkpoints`.

    Saves after every `config.every` chunks (0: never by count), whenever
    `config.every_s` seconds passed since the last save (0: never by time),
    at the end of the run, and when the run is stopped. After each save the
    checkpoint folder goes to the sinks (W&B artifacts) when `config.upload`.
    """

    def __init__(self, run_dir: Path, config: CheckpointConfig, sinks: FanOut | None = None):
        self.directory = run_dir / CHECKPOINTS
        self.config = config
        self.sinks = sinks
        self._last_save = time.monotonic()
        self.failure: str | None = None
        """Why the last save failed (its error's last line); None after one that succeeded."""

    @functools.cached_property
    def _manager(self) -> Any:
        # made on first use: a run with checkpoints off gets no folder
        return _manager(self.directory, self.config.keep)

    def due(self, chunks_done: int, last: bool) -> bool:
        """Whether a checkpoint is due after `chunks_done` chunks."""
        if not self.config.enabled:
            return False
        by_count = self.config.every > 0 and chunks_done % self.config.every == 0
        by_time = self.config.every_s > 0 and time.monotonic() - self._last_save >= self.config.every_s
        return last or by_count or by_time

    def save(self, states: Any, eval_keys: jax.Array, position: Position, final: bool = False) -> Path | None:
        """Writes a checkpoint at `position.env_steps` and returns its folder.

        states: the population's training states ([P] leaves); eval_keys: [P, 2];
        final: the run's last checkpoint (tagged "final" where it is uploaded).
        A failed write (a full disk) is a loud warning, not an error: training
        goes on, the partial folder is removed and the previous checkpoints
        stay intact. Returns None then, and when checkpoints are off.
        """
        import orbax.checkpoint as ocp

        if not self.config.enabled:
            return None
        step = position.env_steps
        self._last_save = time.monotonic()
        if jax.process_count() > 1:
            # distributed=true: eval_keys are this process's own array, which
            # orbax refuses in a multi-process run (the states come gathered,
            # as NumPy: `Programs.whole`); as NumPy they save
            eval_keys = jax.device_get(eval_keys)
        manager = self._manager  # made first: making it sets absl's level
        try:
            with _orbax_logs_held_back():
                manager.save(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(_without_empty({"states": states, "eval_keys": eval_keys})),
                        position=ocp.args.JsonSave(dataclasses.asdict(position)),
                    ),
                    force=True,
                )
                manager.wait_until_finished()
        except Exception as err:  # noqa: BLE001 (orbax and tensorstore raise assorted types for a failed write)
            self.remove_partial(settle_s=_STRAGGLERS_S)
            self.failure = last_line(err)
            warnings.warn(
                f"CHECKPOINT FAILED at step {step} ({self.failure}); training goes on and the previous "
                f"checkpoints ({self.steps() or 'none'}) are kept",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        self.failure = None
        path = self.directory / str(step)
        if self.config.upload and self.sinks is not None:
            aliases = ["latest", f"step-{step}", *(["final"] if final else [])]
            self.sinks.log_artifact(step, "checkpoint", path, aliases)
        return path

    def remove_partial(self, settle_s: float = 0.0) -> None:
        """Deletes what a failed or killed save left (`<step>.orbax-checkpoint-tmp*`),
        best effort (the disk may still be full). Orbax itself removes one only
        when it saves that step again.

        settle_s: after a failed save, writes of the same save still in flight
        in orbax's and tensorstore's threads make the folder again (tensorstore
        makes a file's parent folders), and their futures are out of reach: the
        removal repeats until no leftover has shown for `settle_s` seconds
        (at most 20 times that)."""
        import shutil

        start = quiet_since = time.monotonic()
        while True:
            leftovers = list(self.directory.glob(f"*{_ORBAX_TEMPORARY}*"))
            for leftover in leftovers:
                shutil.rmtree(leftover, ignore_errors=True)
            now = time.monotonic()
            quiet_since = quiet_since if not leftovers else now
            if now - quiet_since >= settle_s or now - start >= 20 * settle_s:
                return
            time.sleep(settle_s / 10)

    def steps(self) -> list[int]:
        """The env steps of the complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def restore(
        self, state_shapes: Any, num_members: int, step: int | None = None
    ) -> tuple[Any, jax.Array, Position] | None:
        """The checkpoint at env step `step`, or (step None) the newest one
        that can be read; None when there is none.

        state_shapes: the training states' shapes and dtypes ([P] leaves).
        Without `step`, a checkpoint that cannot be read (truncated,
        corrupted) is reported with a warning and the one before it is tried.
        Returns (states, eval_keys [P, 2], position).
        Raises ValueError for a `step` that has no checkpoint.
        """
        import orbax.checkpoint as ocp

        steps = self.steps()
        if step is not None and step not in steps:
            raise ValueError(f"no checkpoint at step {step} in {self.directory}; steps: {steps or 'none'}")
        # into host memory (the CPU device), whatever devices the states were saved from: without a
        # sharding, orbax asks for the saved one, so a run saved on 2 devices could not resume on 1;
        # the runner then places the states on its own devices
        host = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
        abstract = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=host),
            {"states": state_shapes, "eval_keys": jax.ShapeDtypeStruct((num_members, 2), np.uint32)},
        )
        for candidate in reversed(steps) if step is None else [step]:
            try:
                with _orbax_logs_held_back():
                    restored = self._manager.restore(
                        candidate,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(_without_empty(abstract)), position=ocp.args.JsonRestore()
                        ),
                    )
                position = _read_position(restored.position)
            except Exception as err:  # noqa: BLE001 (a damaged checkpoint fails in many ways)
                if step is not None:
                    raise ValueError(f"checkpoint {self.directory / str(step)} cannot be read ({_why_unreadable(err)})") from None
                warnings.warn(
                    f"checkpoint {self.directory / str(candidate)} cannot be read ({_why_unreadable(err)}); "
                    "trying the one before it",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            state = _with_empty(abstract, restored.state)
            return state["states"], state["eval_keys"], position
        return None

    def set_aside_after(self, step: int) -> None:
        """Renames the checkpoints after env step `step` (those a resume from
        `step` found unreadable) to `<step>.damaged-<time>`, which orbax does not
        take for a step, with a warning: the resumed run writes its own
        checkpoints at those steps, which orbax refuses while the folders exist.
        They are renamed rather than deleted: the data in them may still be wanted."""
        later = [s for s in self.steps() if s > step]
        for later_step in later:
            damaged = self.directory / f"{later_step}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
            try:
                (self.directory / str(later_step)).rename(damaged)
            except OSError as err:
                # a folder that cannot be renamed cannot take a new checkpoint either: `save` warns then
                warnings.warn(f"unreadable checkpoint {self.directory / str(later_step)} cannot be moved aside "
                              f"({err.strerror}); the checkpoint at its step will fail", RuntimeWarning, stacklevel=2)
                continue
            warnings.warn(f"unreadable checkpoint moved to {damaged}; delete it when you no longer need it",
                          RuntimeWarning, stacklevel=2)
        if later:
            self._manager.reload()

    def position(self, step: int | None = None) -> Position | None:
        """The Position of the checkpoint at env step `step`, or (step None)
        of the newest readable one, read without its states (one small JSON
        item); None when there is none."""
        import orbax.checkpoint as ocp

        for step in reversed(self.steps()) if step is None else [step]:
            try:
                with _orbax_logs_held_back():
                    item = self._manager.restore(step, args=ocp.args.Composite(position=ocp.args.JsonRestore()))
                return _read_position(item.position)
            except Exception:  # noqa: BLE001 (damaged: `restore` reports it and falls back)
                continue
        return None

    def close(self) -> None:
        """Waits for any write in flight and releases orbax's resources."""
        if "_manager" in self.__dict__:
            self._manager.close()


class StopOnSignal:
    """While active, a first SIGINT or SIGTERM asks the loop to stop after the
    current chunk (`requested` names the signal) instead of raising; a second
    one ends the process at once, by the signal's default action.

    Only the main thread can take signals; elsewhere (a notebook's worker
    thread) this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = signal.Signals(signum)
        # A chunk runs in XLA, where Python cannot interrupt it; with the
        # default action back, a second signal kills the process at once and
        # the last complete checkpoint is where a resume starts.
        for other in self.SIGNALS:
            signal.signal(other, signal.SIG_DFL)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
