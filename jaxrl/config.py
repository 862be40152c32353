"""Typed run configuration, built from Hydra's composed config and validated.

Everything a user can get wrong is checked here, before any environment is
built or anything compiles, and reported as a `ConfigError` that names the bad
value and what would be accepted. Nothing downstream sees a DictConfig.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from typing import Any

from jaxrl.algos import ALGORITHMS
from jaxrl.algos.base import traced_names
from jaxrl.envs import SUITES
from jaxrl.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Which environment: `suite` (gymnax | brax), the suite's env `name`,
    a short `id` used in run names, Brax's physics `backend`, and the time
    limit `episode_length` (None: the env's own; 1000 for Brax)."""

    suite: str
    name: str
    id: str = ""
    backend: str = "positional"
    episode_length: int | None = None


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Deterministic evaluation: every `every` log points (and at the end), `episodes` episodes."""

    every: int = 4
    episodes: int = 16


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """Videos of the deterministic policy of population member `member`: at the
    end of training when `enabled`, and also every `every` evaluations when
    `every` > 0. Brax episodes are subsampled to at most `max_frames` frames."""

    enabled: bool = True
    member: int = 0
    every: int = 0
    max_frames: int = 250


LOGGER_BACKENDS = ("none", "wandb")
LOGGER_MODES = ("auto", "online", "offline", "disabled")


@dataclasses.dataclass(frozen=True)
class LoggerConfig:
    """Where metrics go besides the console and metrics.jsonl."""

    backend: str = "none"
    project: str = "jaxrl"
    entity: str | None = None
    tags: tuple[str, ...] = ()
    mode: str = "auto"
    dir: str | None = None


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run: an algorithm on an env, for a population of seeds x sweep members."""

    algo_name: str
    algo: Any  # the algorithm's config dataclass
    env: EnvConfig
    seed: int = 0
    seeds: int = 1
    total_timesteps: int = 1_000_000
    num_logs: int = 20
    eval: EvalConfig = EvalConfig()
    logger: LoggerConfig = LoggerConfig()
    video: VideoConfig = VideoConfig()
    runs_root: str = "runs"
    run_dir: str | None = None
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def members(self) -> list[dict[str, Any]]:
        """One dict per population member: the sweep grid (outer) x seeds (inner).

        e.g. [{"seed": 0, "algo.lr": 0.001}, {"seed": 1, "algo.lr": 0.001}, ...].
        """
        grid = itertools.product(*(values for _, values in self.sweep))
        return [
            {"seed": self.seed + s, **{f"algo.{name}": v for (name, _), v in zip(self.sweep, point)}}
            for point in grid
            for s in range(self.seeds)
        ]


_LOOSE_INT = (int, float)


def _coerce(owner: str, name: str, kind: Any, value: Any) -> Any:
    """Checks one value against a dataclass field type, converting YAML/CLI forms
    (5e6 for an int, a list for a tuple); raises ConfigError naming the field."""
    origin = typing.get_origin(kind)
    where = f"{owner}.{name}" if owner else name
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        return _coerce(owner, name, next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        inner = typing.get_args(kind)[0]
        return tuple(_coerce(owner, name, inner, v) for v in value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, _LOOSE_INT) or int(value) != value:
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, _LOOSE_INT):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def build(cls: type, values: dict[str, Any], owner: str, **checked: Any) -> Any:
    """Makes dataclass `cls` from a plain dict, rejecting unknown keys with the valid ones listed.

    `checked` fields are passed through as they are (already validated objects).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields) - set(checked))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{owner}.{k}' for k in unknown)}; valid keys of {owner}: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(owner, k, hints[k], v) for k, v in values.items()}, **checked)


def _positive(where: str, value: int | float) -> None:
    if value <= 0:
        raise ConfigError(f"{where} must be positive, got {value}")


def from_dict(raw: dict[str, Any]) -> RunConfig:
    """Validates a composed config (plain containers, e.g. `OmegaConf.to_container(cfg, resolve=True)`)."""
    raw = dict(raw)
    algo_raw = dict(raw.pop("algo", {}))
    algo_name = algo_raw.pop("name", None)
    if algo_name not in ALGORITHMS:
        raise ConfigError(f"unknown algo {algo_name!r}; valid algos: {', '.join(sorted(ALGORITHMS))}")
    algo_cls = ALGORITHMS[algo_name]
    algo = build(algo_cls.config_cls, algo_raw, "algo")

    env = build(EnvConfig, dict(raw.pop("env", {})), "env")
    if env.suite not in SUITES:
        raise ConfigError(f"unknown env.suite {env.suite!r}; valid suites: {', '.join(SUITES)}")
    env = dataclasses.replace(env, id=env.id or env.name)

    sweep_raw = raw.pop("sweep", None) or {}
    sweep_algo = dict(sweep_raw.pop("algo", None) or {})
    if sweep_raw:
        raise ConfigError(f"unknown sweep key(s) {', '.join(f'sweep.{k}' for k in sweep_raw)}; only sweep.algo.<hyperparameter> is sweepable")
    traced = traced_names(algo_cls.config_cls)
    sweep = []
    for name, values in sweep_algo.items():
        if name not in traced:
            raise ConfigError(f"sweep.algo.{name} is not a sweepable hyperparameter of {algo_name}; sweepable: {', '.join(traced)}")
        values = values if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise ConfigError(f"sweep.algo.{name} is empty; give a list such as [1e-4,3e-4]")
        sweep.append((name, tuple(_coerce("sweep.algo", name, float, v) for v in values)))

    run = build(
        RunConfig,
        {k: v for k, v in raw.items() if k not in ("eval", "logger", "video")},
        "",
        algo_name=algo_name,
        algo=algo,
        env=env,
        eval=build(EvalConfig, dict(raw.get("eval") or {}), "eval"),
        logger=build(LoggerConfig, dict(raw.get("logger") or {}), "logger"),
        video=build(VideoConfig, dict(raw.get("video") or {}), "video"),
        sweep=tuple(sweep),
    )
    if run.logger.backend not in LOGGER_BACKENDS:
        raise ConfigError(f"unknown logger.backend {run.logger.backend!r}; choose one of: {', '.join(LOGGER_BACKENDS)}")
    if run.logger.mode not in LOGGER_MODES:
        raise ConfigError(f"unknown logger.mode {run.logger.mode!r}; choose one of: {', '.join(LOGGER_MODES)}")
    for where, value in [
        ("seeds", run.seeds),
        ("total_timesteps", run.total_timesteps),
        ("num_logs", run.num_logs),
        ("eval.every", run.eval.every),
        ("eval.episodes", run.eval.episodes),
    ]:
        _positive(where, value)
    _positive("video.max_frames", run.video.max_frames)
    if run.video.every < 0:
        raise ConfigError(f"video.every must be >= 0 (0: only at the end), got {run.video.every}")
    members = len(run.members())
    if not 0 <= run.video.member < members:
        raise ConfigError(f"video.member={run.video.member} is not a member index; this run has members 0..{members - 1}")
    if run.seed < 0:
        raise ConfigError(f"seed must be >= 0, got {run.seed}")
    if run.total_timesteps >= 2**31:
        # env steps are counted in int32 inside the jitted state
        raise ConfigError(f"total_timesteps={run.total_timesteps} is too large; at most {2**31 - 1} per seed")
    algo.validate(run.total_timesteps)
    for name, values in run.sweep:
        for value in values:
            try:
                dataclasses.replace(algo, **{name: value}).validate(run.total_timesteps)
            except ConfigError as err:
                raise ConfigError(f"sweep.algo.{name}={value}: {err}") from None
    return run
