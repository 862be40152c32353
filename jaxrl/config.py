"""Typed run configuration, built from Hydra's composed config and validated.

Everything a user can get wrong is checked here, before any environment is
built or anything compiles, and reported as a `ConfigError` that names the bad
value and what would be accepted. Nothing downstream sees a DictConfig.

Type coercion is pydantic's (installed with wandb): it validates these
dataclasses and the algorithms' config structs as they are, turns `5e6` into
an int and lists into tuples, and refuses unknown keys, NaN and infinity.
Hydra's structured configs would not do: they reject `5e6` for an int, which
the command line promises. jaxrl only words pydantic's errors as one line.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import typing
from typing import Any

import pydantic

from jaxrl.algos import ALGORITHMS
from jaxrl.algos.base import traced_names
from jaxrl.envs import SUITES
from jaxrl.errors import ConfigError
from jaxrl.sinks import LOGGERS, WANDB_MODES
from jaxrl.sweeps import Sweep, parse_sweep

__all__ = [
    "AlertRule",
    "AlertsConfig",
    "ConfigError",
    "EnvConfig",
    "EvalConfig",
    "LoggerConfig",
    "RunConfig",
    "VideoConfig",
    "build",
    "from_dict",
]

# Unknown keys are errors and numbers must be finite, in every config class.
STRICT = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Which environment: `suite` (gymnax | brax | playground), the suite's
    env `name`, a short `id` used in run names, the physics `backend` (Brax's
    pipeline, default positional; Playground's MJX impl, default jax), and the
    time limit `episode_length` (None: the env's own; 1000 for Brax)."""

    __pydantic_config__ = STRICT

    suite: str
    name: str
    id: str = ""
    backend: str | None = None
    episode_length: int | None = None


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Deterministic evaluation: every `every` log points (and at the end), `episodes` episodes."""

    __pydantic_config__ = STRICT

    every: int = 4
    episodes: int = 16


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """Videos of the deterministic policy of population member `member`, only
    when `enabled`: at the end of training, and also every `every` evaluations
    when `every` > 0. An episode longer than `max_frames` steps is drawn
    every k-th state, at most `max_frames` + 1 frames (the final state included)."""

    __pydantic_config__ = STRICT

    enabled: bool = True
    member: int = 0
    every: int = 0
    max_frames: int = 250


@dataclasses.dataclass(frozen=True)
class LoggerConfig:
    """Where metrics go besides the console and metrics.jsonl."""

    __pydantic_config__ = STRICT

    backend: str = "none"
    project: str = "jaxrl"
    entity: str | None = None
    tags: tuple[str, ...] = ()
    mode: str = "auto"
    dir: str | None = None
    timeout_s: float = 300.0


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoints of the whole training state (`jaxrl.checkpoint`): when
    `enabled`, after every `every` log points (0: not by count), whenever
    `every_s` seconds have passed since the last one (0: not by time), at the
    end and when stopped; the newest `keep` are kept; `upload` logs each to
    the logger (W&B artifacts; wandb offline: the final one)."""

    __pydantic_config__ = STRICT

    enabled: bool = True
    every: int = 0
    every_s: float = 300.0
    keep: int = 3
    upload: bool = True


@dataclasses.dataclass(frozen=True)
class AlertRule:
    """One alert rule (README "Alerts"). `kind` picks which fields count:

    metric: `metric` `op` `value` held for `points` consecutive logged points,
        per member or, with scope=population, on the population's mean;
    not_improved: `metric` has not improved (by `op`: '>' or '>=' means higher
        is better) for `points` logged points;
    system: a `jaxrl.alerts.SYSTEM_METRICS` value `op` `value` for `points`
        consecutive samples (taken every alerts.interval_s);
    no_progress: no chunk completed for `seconds`;
    run: the run ended with a status in `when` (finished/failed/stopped/interrupted).

    An alert fires once per rule and member, and again only after its condition
    cleared or, when `cooldown_s` is set, that many seconds later; the members
    a rule fires for at the same logged point share one alert.
    """

    __pydantic_config__ = STRICT

    kind: str = "metric"
    name: str = ""
    level: str = "warn"
    cooldown_s: float | None = None
    metric: str = ""
    op: str = ">="
    value: float | None = None
    points: int = 1
    scope: str = "member"
    seconds: float = 1800.0
    when: tuple[str, ...] = ("finished", "failed", "stopped", "interrupted")


@dataclasses.dataclass(frozen=True)
class AlertsConfig:
    """Alerts (`jaxrl.alerts`): rules, the channels they go to, the heartbeat.

    channels: "console", "wandb", an apprise URL, "env:NAME" (the URL(s) in
        environment variable NAME: secrets stay out of config and logs) or
        "config:PATH" (an apprise config file).
    on_nonfinite: "stop" (a NaN/inf stops the run resumably, without saving
        its bad state) or "continue" (alert only).
    interval_s: how often heartbeat.json is written, system metrics sampled,
        no-progress checked and heartbeats posted to `watch_url`.
    timeout_s: silence after which `jaxrl.watch` calls this run dead (at least
        3 x interval_s, so that a healthy run is never called silent between heartbeats).
    ping_url: a dead-man's switch (healthchecks.io style: <url>/start, <url>,
        <url>/fail), or "env:NAME".
    retries: delivery attempts per alert and channel after the first.
    flush_s: how long the end of a run waits for alerts still being delivered.
    test_nan: test only: [chunk, member] whose hyperparameters become NaN
        before that chunk runs.
    """

    __pydantic_config__ = STRICT

    rules: tuple[AlertRule, ...] = ()
    channels: tuple[str, ...] = ("console",)
    on_nonfinite: str = "stop"
    interval_s: float = 5.0
    timeout_s: float = 600.0
    ping_url: str | None = None
    watch_url: str | None = None
    retries: int = 2
    flush_s: float = 10.0
    test_nan: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run: an algorithm on an env, for a population of seeds x sweep members."""

    __pydantic_config__ = pydantic.ConfigDict(STRICT, arbitrary_types_allowed=True)

    algo_name: str
    algo: Any  # the algorithm's config struct
    env: EnvConfig
    seed: int = 0
    seeds: int = 1
    total_timesteps: int = 1_000_000
    num_logs: int = 20
    eval: EvalConfig = EvalConfig()
    logger: LoggerConfig = LoggerConfig()
    video: VideoConfig = VideoConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    alerts: AlertsConfig = AlertsConfig()
    runs_root: str = "runs"
    distributed: bool = False
    run_dir: str | None = None
    resume: str | None = None
    deterministic: bool = False
    # configs/config.yaml gives CLI and notebook runs a folder; None (no cache) for
    # programs that build a RunConfig themselves, such as benchmarks that time compilation
    compile_cache: str | None = None
    sweep: Sweep = Sweep()

    def members(self) -> list[dict[str, Any]]:
        """One dict per population member: the sweep's settings (outer) x seeds (inner).

        e.g. [{"seed": 0, "algo.lr": 0.001}, {"seed": 1, "algo.lr": 0.001}, ...].
        """
        return [
            {"seed": self.seed + s, **{f"algo.{name}": v for name, v in point.items()}}
            for point in self.sweep.points()
            for s in range(self.seeds)
        ]


# RunConfig fields that jaxrl fills in itself; a user sets them as algo=..., sweep.algo.<name>=...
_INTERNAL = ("algo_name", "algo", "sweep")
_UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")
_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "tuple": "a list",
    "list": "a list",
    "dict": "a mapping of keys to values",
    "dataclass": "a mapping of keys to values",
}


def _dotted(*parts: Any) -> str:
    return ".".join(str(p) for p in parts if p != "")


@functools.cache
def _adapter(cls: type) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(cls)


def _unknown_keys(owner: str, cls: type, parent: tuple[str, ...], keys: list[str]) -> str:
    node = cls
    for part in parent:
        node = typing.get_type_hints(node)[part]
    valid = [f.name for f in dataclasses.fields(node) if not (node is RunConfig and f.name in _INTERNAL)]
    scope = _dotted(owner, *parent)
    where = f"valid keys of {scope}" if scope else "valid top-level keys"
    return f"unknown key(s) {', '.join(_dotted(scope, k) for k in keys)}; {where}: {', '.join(valid)}{_owners(node, keys)}"


def _owners(node: type, keys: list[str]) -> str:
    """For keys unknown to an algorithm's config, which algorithms they belong
    to: a preset (experiment=...) written for one algorithm, run with algo= another."""
    owners = [
        name
        for name, algo in sorted(ALGORITHMS.items())
        if algo.config_cls is not node and set(keys) <= {f.name for f in dataclasses.fields(algo.config_cls)}
    ]
    if not owners or node not in {algo.config_cls for algo in ALGORITHMS.values()}:
        return ""
    return f" (these are keys of {', '.join(owners)}: was the experiment preset made for another algo?)"


def _wrong_value(owner: str, error: dict[str, Any]) -> str:
    where = owner
    for part in error["loc"]:  # a list's item by its index: alerts.channels[1]
        where = f"{where}[{part}]" if isinstance(part, int) else _dotted(where, part)
    kind = error["type"]
    if kind == "finite_number":
        return f"{where} must be a finite number, got {error['input']!r}"
    if kind == "missing_argument":
        return f"{where} is required"
    if kind == "int_parsing_size":
        return f"{where}={error['input']!r} is too large for an integer"
    expected = next((text for prefix, text in _EXPECTED.items() if kind.startswith(prefix)), None)
    if expected is None:
        return f"{where}: {error['msg']}, got {error['input']!r}"
    return f"{where} must be {expected}, got {error['input']!r}"


def build(cls: type, values: dict[str, Any], owner: str) -> Any:
    """Makes dataclass `cls` from plain containers (`values` is not modified).

    Converts YAML and command-line forms (5e6 for an int, a list for a tuple)
    and raises a ConfigError naming the key (`<owner>.<key>`) for an unknown
    key, a wrong type, NaN or infinity.
    """
    try:
        return _adapter(cls).validate_python(values)
    except pydantic.ValidationError as err:
        errors = err.errors(include_url=False)
    unknown = [e for e in errors if e["type"] in _UNKNOWN]
    if unknown:
        parent = unknown[0]["loc"][:-1]
        keys = [e["loc"][-1] for e in unknown if e["loc"][:-1] == parent]
        raise ConfigError(_unknown_keys(owner, cls, parent, keys))
    raise ConfigError(_wrong_value(owner, errors[0]))


def _positive(where: str, value: int | float) -> None:
    if value <= 0:
        raise ConfigError(f"{where} must be positive, got {value}")


def _alerts(raw: Any) -> AlertsConfig:
    """The `alerts` section, each rule validated on its own so that an error
    names it (`alerts.rules[1].op`), rules and channels checked by `jaxrl.alerts`."""
    from jaxrl.alerts import check_alerts

    raw = dict(raw or {})
    rules = raw.pop("rules", None) or []
    if not isinstance(rules, (list, tuple)):
        raise ConfigError(f"alerts.rules must be a list of rules such as [{{metric: eval/return_mean, op: '>=', value: 90}}], got {rules!r}")
    for key in ("channels",):
        if isinstance(raw.get(key), str):
            raw[key] = [raw[key]]
    alerts = build(AlertsConfig, raw, "alerts")
    built = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise ConfigError(f"alerts.rules[{i}] must be a mapping such as {{metric: eval/return_mean, op: '>=', value: 90}}, got {rule!r}")
        built.append(build(AlertRule, rule, f"alerts.rules[{i}]"))
    alerts = dataclasses.replace(alerts, rules=tuple(built))
    check_alerts(alerts)
    return alerts


def from_dict(raw: dict[str, Any]) -> RunConfig:
    """Validates a composed config (plain containers, e.g. `OmegaConf.to_container(cfg, resolve=True)`).

    `raw` is not modified.
    """
    raw = copy.deepcopy(raw)
    algo_raw = dict(raw.pop("algo", None) or {})
    algo_name = algo_raw.pop("name", None)
    if algo_name not in ALGORITHMS:
        raise ConfigError(f"unknown algo {algo_name!r}; valid algos: {', '.join(sorted(ALGORITHMS))}")
    algo_cls = ALGORITHMS[algo_name].config_cls
    algo = build(algo_cls, algo_raw, "algo")
    traced = traced_names(algo_cls)
    static = [f.name for f in dataclasses.fields(algo_cls) if f.name not in traced]
    sweep = parse_sweep(algo_name, traced, raw.pop("sweep", None), static)
    alerts = _alerts(raw.pop("alerts", None))
    run = build(RunConfig, {**raw, "algo_name": algo_name, "algo": algo, "sweep": sweep, "alerts": alerts}, "")
    if run.env.suite not in SUITES:
        raise ConfigError(f"unknown env.suite {run.env.suite!r}; valid suites: {', '.join(SUITES)}")
    run = dataclasses.replace(run, env=dataclasses.replace(run.env, id=run.env.id or run.env.name))
    if set(run.env.id) & set("/\\") or run.env.id in (".", ".."):
        # the id names the run folder; a path in it would put the run elsewhere
        raise ConfigError(f"env.id={run.env.id!r} must be a plain name (no '/', '\\', '.' or '..'); it names the run folder")
    if run.env.episode_length is not None and not 0 < run.env.episode_length < 2**31:
        # step counters inside the jitted env are int32
        raise ConfigError(f"env.episode_length must be in 1..{2**31 - 1} (or null: the env's own), got {run.env.episode_length}")
    if run.logger.backend not in LOGGERS:
        raise ConfigError(f"unknown logger.backend {run.logger.backend!r}; choose one of: {', '.join(LOGGERS)}")
    if run.logger.mode not in WANDB_MODES:
        raise ConfigError(f"unknown logger.mode {run.logger.mode!r}; choose one of: {', '.join(WANDB_MODES)}")
    # wandb's own rule for project names (wandb.Settings), which it applies only when its runs start
    forbidden = set(run.logger.project) & set("/\\#?%:")
    if run.logger.backend == "wandb" and (forbidden or not 0 < len(run.logger.project) <= 128):
        raise ConfigError(
            f"logger.project={run.logger.project!r} is not a W&B project name: 1 to 128 characters, none of / \\ # ? % :"
        )
    if not run.logger.timeout_s > 0:
        raise ConfigError(f"logger.timeout_s must be > 0 seconds, got {run.logger.timeout_s}")
    if "wandb" in run.alerts.channels and run.logger.backend != "wandb":
        # the channel alerts on the run's own wandb runs; without them its alerts would go nowhere
        raise ConfigError(f"alerts channel wandb needs logger=wandb, got logger={run.logger.backend}")
    for where, value in [
        ("seeds", run.seeds),
        ("total_timesteps", run.total_timesteps),
        ("num_logs", run.num_logs),
        ("eval.every", run.eval.every),
        ("eval.episodes", run.eval.episodes),
        ("video.max_frames", run.video.max_frames),
        ("checkpoint.keep", run.checkpoint.keep),
    ]:
        _positive(where, value)
    if run.checkpoint.every < 0 or run.checkpoint.every_s < 0:
        raise ConfigError(
            f"checkpoint.every and checkpoint.every_s must be >= 0 (0: off), got {run.checkpoint.every} "
            f"and {run.checkpoint.every_s}"
        )
    if run.video.every < 0:
        raise ConfigError(f"video.every must be >= 0 (0: only at the end), got {run.video.every}")
    members = run.members()
    if not 0 <= run.video.member < len(members):
        raise ConfigError(f"video.member={run.video.member} is not a member index; this run has members 0..{len(members) - 1}")
    if run.alerts.test_nan is not None and not (run.alerts.test_nan[0] >= 0 and 0 <= run.alerts.test_nan[1] < len(members)):
        raise ConfigError(f"alerts.test_nan={list(run.alerts.test_nan)} must be [chunk >= 0, member in 0..{len(members) - 1}]")
    if not 0 <= run.seed <= 2**32 - run.seeds:
        # seeds become uint32 PRNG keys
        raise ConfigError(f"seed must be in 0..{2**32 - run.seeds} for {run.seeds} seed(s), got {run.seed}")
    algo.validate(run.total_timesteps)
    # after the algorithm's checks: its num_envs and rollout_length size the chunks
    rounded = Schedule.for_run(run).total_steps
    if rounded >= 2**31:
        # env steps are counted in int32 inside the jitted state
        raise ConfigError(
            f"total_timesteps={run.total_timesteps} is too large: rounded up to whole chunks it is {rounded} env steps "
            f"per seed, and at most {2**31 - 1} fit"
        )
    _check_settings(run)
    return run


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run's updates are cut into chunks (all counts per member), and
    the budget its training state is sized for (`sized_for`: the first
    session's total steps, which a replay buffer's capacity derives from)."""

    num_chunks: int
    updates_per_chunk: int
    steps_per_update: int
    sized_for: int | None = None  # None: this schedule's own total steps

    def __post_init__(self) -> None:
        if self.sized_for is None:
            object.__setattr__(self, "sized_for", self.total_steps)

    @classmethod
    def for_run(cls, run: RunConfig, updates_per_chunk: int | None = None, sized_for: int | None = None) -> Schedule:
        """`total_timesteps` rounded up to whole updates and chunks, at most
        `num_logs` chunks; a resumed run passes its chunk length and the
        budget its state was sized for, which stay what they were when
        `total_timesteps` changes."""
        # every algorithm takes num_envs x rollout_length env steps per update
        steps_per_update = run.algo.num_envs * run.algo.rollout_length
        num_updates = math.ceil(run.total_timesteps / steps_per_update)
        per_chunk = updates_per_chunk or math.ceil(num_updates / min(run.num_logs, num_updates))
        return cls(math.ceil(num_updates / per_chunk), per_chunk, steps_per_update, sized_for)

    @property
    def total_steps(self) -> int:
        """Env steps per member over the whole run."""
        return self.num_chunks * self.updates_per_chunk * self.steps_per_update


def _check_settings(run: RunConfig) -> None:
    """Validates every distinct value a sweep gives each hyperparameter,
    naming the search space a bad one came from."""
    spaces = {name: str(dist) for name, dist in run.sweep.random}
    seen: set[tuple[str, float]] = set()
    points = run.sweep.points()
    for point in points:
        for name, value in point.items():
            if (name, value) in seen:
                continue
            seen.add((name, value))
            try:
                run.algo.replace(**{name: value}).validate(run.total_timesteps)
            except ConfigError as err:
                drawn = f" (drawn from {spaces[name]} with sweep.seed={run.sweep.seed})" if name in spaces else ""
                raise ConfigError(f"sweep.algo.{name}={value:g}{drawn}: {err}") from None
    # a hyperparameter these settings never read gives identical members: compute spent on nothing
    for name in run.sweep.names:
        reasons = [run.algo.replace(**point).unused().get(name) for point in points]
        if all(reasons):
            raise ConfigError(f"sweep.algo.{name} has no effect on {run.algo_name} with these settings: {reasons[0]}")
