"""The sink interface: where metrics go, on the host, between jitted chunks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a sink needs to know about a run when it opens.

    run_dir: the run folder (exists when sinks open).
    name: the run's name (the folder's name); sinks group members under it.
    algo, env: the algorithm and environment names, e.g. "ppo", "mountaincar_continuous".
    config: the resolved configuration as plain Python containers.
    members: one dict per trained population member, in the order of the
        rows given to `log`: {"seed": int} plus, in a sweep, the member's
        hyperparameter values, e.g. {"seed": 0, "algo.lr": 0.0003}.
    total_steps: env steps per member the run is going to take.
    """

    run_dir: Path
    name: str
    algo: str
    env: str
    config: dict[str, Any]
    members: list[dict[str, Any]]
    total_steps: int


class Sink(Protocol):
    """A metrics consumer. Sinks must not raise into training for their own
    failures (a dead network, a full disk): warn once and carry on."""

    def open(self, run: RunInfo) -> None:
        """Called once before training starts."""
        ...

    def log(self, step: int, rows: list[dict[str, float]]) -> None:
        """One logged point: `step` env steps per member; `rows[i]` holds member
        i's metrics as plain floats, keyed like "train/episode_return",
        "loss/policy", "eval/return_mean", "perf/sps"."""
        ...

    def close(self, summary: dict[str, Any]) -> None:
        """Called once at the end with the run's summary (the `summary.json`
        content: per-member lists under "final"); when training failed,
        {"status": "failed", "error": "<type>: <message>"} instead. Also
        called for a sink whose `open` was not reached."""
        ...
