"""The training loop's events, and the hooks that subscribe to them.

The runner's loop emits an event at each point where the host may act:
a chunk of updates done, an evaluation done, a checkpoint saved (or not),
the run ended. A `Hook` reacts to them with side effects (files, videos,
plots, alerts), always between jitted chunks, never inside one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jaxrl.sinks.base import RunInfo

__all__ = ["EPISODE_METRICS", "CheckpointDone", "ChunkDone", "EvaluationDone", "Hook", "RunEnded"]

EPISODE_METRICS = ("train/episode_return", "train/episode_length")
"""Every algorithm logs these, but a member's row holds them only when one of
its episodes finished in the chunk (long episodes: not in the first chunks)."""


@dataclasses.dataclass(frozen=True)
class ChunkDone:
    """A chunk of updates finished, and its rows went to the sinks.

    index: 0-based chunk index; last: whether it is the run's last chunk.
    step: env steps per member so far.
    rows: per-member metrics of the chunk (evaluation results merged in).
    states: the population's training state, on the device: [P'] leading axis, the P
        members and then any padding (copies of the last member; `population_devices`).
        With several processes (`distributed=true`) hooks run on process 0, whose
        devices hold only its own members' part: read policies from `EvaluationDone`.
    evaluated: whether an evaluation ran after this chunk.
    """

    index: int
    last: bool
    step: int
    rows: list[dict[str, float]]
    states: Any
    evaluated: bool


@dataclasses.dataclass(frozen=True)
class EvaluationDone:
    """A deterministic evaluation of every member finished.

    results: {"eval/return_mean": [P floats], ...}, members in order.
    params: the population's policy params ([P] leading axis), on the host.
    """

    index: int
    step: int
    results: dict[str, list[float]]
    params: Any


@dataclasses.dataclass(frozen=True)
class CheckpointDone:
    """A checkpoint save ended, well or not (checkpoints on, process 0).

    step: its env steps per member; path: its folder, None where the write failed;
    error: why it failed (the error's last line), else None;
    kept: env steps of the run's complete checkpoints after it, oldest first.
    """

    step: int
    path: Path | None
    error: str | None
    kept: list[int]


@dataclasses.dataclass(frozen=True)
class RunEnded:
    """Training finished, its final checkpoint is saved (where checkpoints are
    on), and summary.json is about to be written (after every hook's `on_end`).

    summary: what summary.json will hold; states: the final training state (as in ChunkDone);
    params: the population's final policy params ([P] leading axis), on the host.
    """

    step: int
    summary: dict[str, Any]
    states: Any
    params: Any = None


class Hook:
    """Reacts to the loop's events on the host. Every method is optional.

    Hooks run in order, after the sinks have logged the chunk. A hook that
    must never stop training (a video, a plot) catches its own failures.
    """

    def on_start(self, run: RunInfo) -> None:
        """Before the first chunk."""

    def on_evaluation(self, event: EvaluationDone) -> None:
        """After each evaluation, before the chunk's rows are logged."""

    def on_chunk(self, event: ChunkDone) -> None:
        """After each chunk's rows were logged. Raising `jaxrl.errors.Stopped`
        stops the run resumably (checkpointed unless `save=False`); the hooks
        after this one do not see the chunk."""

    def on_checkpoint(self, event: CheckpointDone) -> None:
        """After each checkpoint save, a failed one included (training goes on
        after a failure: the run's next save may succeed)."""

    def on_end(self, event: RunEnded) -> None:
        """After the last chunk and the final checkpoint, before summary.json
        is written and the sinks close: a process killed here leaves the run
        unfinished, and its resume calls `on_end` again (training no chunk)."""

    def state(self) -> dict[str, Any] | None:
        """Host-side state a resumed run goes on from (JSON-serialisable),
        saved in every checkpoint as of its step; None: the hook keeps none."""
        return None

    def load_state(self, state: dict[str, Any]) -> None:
        """Before `on_start` of a run resumed from a checkpoint: what `state`
        returned when that checkpoint was saved."""

    def on_exit(self, summary: dict[str, Any]) -> None:
        """However the run ends, once summary.json is written, before the sinks
        close: `summary["status"]` is "finished", "stopped" (`jaxrl.errors.Stopped`,
        with "reason"), "interrupted" or "failed" (with "error")."""
