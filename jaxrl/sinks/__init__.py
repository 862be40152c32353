"""Where metrics go: the console, metrics.jsonl, and the logger chosen in config."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from jaxrl.sinks.base import FanOut, RunInfo, Sink

if TYPE_CHECKING:
    from jaxrl.config import LoggerConfig, RunConfig

__all__ = ["LOGGERS", "WANDB_MODES", "FanOut", "RunInfo", "Sink", "make_sinks"]

WANDB_MODES = ("auto", "online", "offline", "disabled")
"""`logger.mode`: what `jaxrl.sinks.wandb_sink.resolve_mode` accepts (here, where config can import it without wandb)."""


def _wandb(logger: LoggerConfig) -> list[Sink]:
    # imported only when asked for: wandb takes a while to import
    from jaxrl.sinks.wandb_sink import WandbSink

    return [WandbSink(logger.project, logger.entity, logger.tags, logger.mode, logger.dir, logger.timeout_s)]


LOGGERS: dict[str, Callable[[LoggerConfig], list[Sink]]] = {"none": lambda logger: [], "wandb": _wandb}
"""`logger.backend` -> the sinks it adds to the console and metrics.jsonl."""


def make_sinks(run: RunConfig) -> list[Sink]:
    """The console, metrics.jsonl, and the sinks of `run.logger.backend`."""
    from jaxrl.sinks.console import ConsoleSink
    from jaxrl.sinks.jsonl import JsonlSink

    return [ConsoleSink(), JsonlSink(), *LOGGERS[run.logger.backend](run.logger)]
