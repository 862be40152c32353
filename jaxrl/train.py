"""Command-line entry point: `python -m jaxrl.train [key=value ...]`.

Composes the Hydra config, validates it, makes the run folder, trains, and
leaves config.yaml, metrics.jsonl, summary.json and the policy there.

Exit status: 0 finished, 2 bad input (one line on stderr, before anything
compiles), 75 stopped early and resumable (`jaxrl.errors.Stopped`),
130 / 143 interrupted by SIGINT / SIGTERM (summary.json says "interrupted"),
1 anything else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

from jaxrl import multirun
from jaxrl.config import ConfigError, RunConfig, from_dict
from jaxrl.errors import RESUMABLE_EXIT, Interrupted, Stopped, format_warning, last_line
from jaxrl.events import Hook
from jaxrl.files import FolderLock, folder_path, read_summary, write_atomically
from jaxrl.host import relax_cpu_guard
from jaxrl.multirun import flat_config, job_dir
from jaxrl.sweeps import quote_distributions

CONFIG_MODULE = "jaxrl.configs"
MULTIRUN_FLAGS = ("-m", "--multirun")


def run_dir_for(run: RunConfig) -> Path:
    """The run folder: `run_dir` if given, else a Hydra multirun job's own folder
    (`<runs_root>/multirun-<time>/<job>`), else a new `<runs_root>/<time>-<algo>-<env>`
    (with a numbered suffix when a run started in the same second); `~` is expanded."""
    if run.run_dir:
        return Path(run.run_dir).expanduser()
    if (folder := job_dir()) is not None:
        return folder
    base = Path(run.runs_root).expanduser() / f"{time.strftime('%Y%m%d-%H%M%S')}-{run.algo_name}-{run.env.id}"
    path, n = base, 1
    while os.path.exists(path):  # False, not an error, for a name too long (checked later)
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def run_from_overrides(overrides: list[str], hooks: Sequence[Hook] = (), own_process: bool = False) -> dict[str, Any]:
    """Composes the config of `python -m jaxrl.train OVERRIDES`, finds the run
    to resume when `resume=` asks for one, trains, and returns the summary.
    `hooks` hear the run's events after the built-in ones (`jaxrl.api.run`
    learns its run folder so). `own_process`: this run is all the process
    will compute, so XLA may start without the CPU guard where the env does
    not need it (`jaxrl.host.relax_cpu_guard`)."""
    cfg = _compose_resumable(overrides)
    resume_dir, lock = resume_target(cfg)
    with lock or contextlib.nullcontext():
        if resume_dir is not None and cfg.resume != "auto" and (elsewhere := _other_run_dir(overrides, resume_dir)):
            # a run is not copied elsewhere on resume: training on in its folder would leave the
            # named one empty, without a word
            raise ConfigError(
                f"resume={cfg.resume} goes on in that folder, and run_dir={elsewhere} names another; give one "
                "of them (to move a run, move its folder, then resume it there)"
            )
        if resume_dir is not None:
            auto = cfg.resume == "auto"
            # the run's own command line under this one, as for resume=<folder>: a command that
            # leaves out what the run was started with asks for that run, not for the defaults
            overrides = resume_overrides(resume_dir, overrides)
            try:
                cfg = compose_config(overrides)
            except ConfigError as err:
                raise ConfigError(f"cannot resume {resume_dir} with this command line: {err}") from None
            if auto and _finished_already(resume_dir, cfg):
                # a requeued job whose run is done: nothing to train, and nothing wrong
                print(f"{resume_dir} finished already", file=sys.stderr, flush=True)
                return json.loads((resume_dir / "summary.json").read_text())
            if auto and (why := _replays_a_bad_state(resume_dir, cfg)):
                # a requeue loop would otherwise stop on the same NaN forever
                raise ConfigError(why)
            check_resumable(resume_dir, cfg)
        return run_from_config(cfg, overrides, resume_dir, hooks, own_process, lock)



def _other_run_dir(overrides: list[str], resume_dir: Path) -> str | None:
    """The command line's `run_dir` when it names another folder than `resume_dir`, the run to resume
    (read from `overrides` alone: the run's recorded command line may name it as seen from elsewhere)."""
    if not any(_key(o) == "run_dir" for o in overrides):
        return None
    # with runs_root, which run_dir may name (run_dir='${runs_root}/x')
    run_dir = compose_config([o for o in overrides if _key(o) in ("run_dir", "runs_root")]).run_dir
    return run_dir if run_dir is not None and folder_path(str(run_dir)).resolve() != resume_dir.resolve() else None


def _compose_resumable(overrides: list[str]) -> DictConfig:
    """`compose_config(overrides)`, but for `resume=<run folder>` a key that only the run's own
    algorithm has (a SAC run's `algo.batch_size`) is composed on that run's command line rather
    than on the default algorithm's, so that `check_resumable` names it as a change, not as unknown."""
    try:
        return compose_config(overrides)
    except ConfigError:
        resume = [o for o in overrides if _key(o) == "resume"]
        folder = compose_config(resume).resume if resume else None
        if folder in (None, "auto") or not (Path(folder).expanduser() / OVERRIDES_FILE).is_file():
            raise
        try:
            return compose_config([*resume_overrides(Path(folder).expanduser(), overrides), *resume])
        except ConfigError as err:
            raise ConfigError(f"cannot resume {folder} with this command line: {err}") from None

def run_from_config(
    cfg: DictConfig,
    overrides: list[str] = (),
    resume_dir: Path | None = None,
    hooks: Sequence[Hook] = (),
    own_process: bool = False,
    lock: FolderLock | None = None,
) -> dict[str, Any]:
    """Validates `cfg`, trains (going on in `resume_dir` when given), and
    returns the summary. `overrides`, the command line `cfg` was composed
    from, is kept in the run folder so that the run can be resumed; `hooks`
    follow the built-in ones; `own_process` as in `run_from_overrides`;
    `lock`: `resume_dir`'s lock when this process holds it already."""
    from jaxrl.alerts import alert_hooks
    from jaxrl.distributed import from_writer, initialize, is_writer, together
    from jaxrl.runner import train
    from jaxrl.sinks import make_sinks

    if resume_dir is not None:
        cfg.run_dir, cfg.resume = str(resume_dir), None
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run = from_dict(resolved)
    if own_process:
        _relax_cpu_guard_for([run])
    if run.deterministic:
        from jaxrl.host import make_deterministic

        make_deterministic()
    if run.distributed:
        initialize()
        if not is_writer():
            # process 0's verdict on its outputs (below), then its run folder, which `hooks` hear of
            together(lambda: None, True)
            return _train_quietly(run, resolved, resume_dir, hooks, Path(from_writer("")))
    run_dir = run_dir_for(run)

    def outputs() -> tuple[list[Any], list[Hook]]:
        sinks = make_sinks(run)
        return sinks, alert_hooks(run, sinks, run_dir)

    # only process 0 opens them, and it may refuse (an alert channel's unset variable): then all do
    sinks, alerts = together(outputs, run.distributed)
    if run.distributed:
        from_writer(os.path.abspath(run_dir))
    hooks = [_KeepOverrides(run_dir, overrides), *alerts, *hooks]
    try:
        return train(run, run_dir, sinks, resolved, hooks, resume_from=run_dir if resume_dir is not None else None,
                     lock=lock)
    except BaseException as err:
        # a multirun job's folder is Hydra's, made before the job compiles: empty, it holds nothing done
        if os.path.isdir(run_dir) and os.listdir(run_dir):
            err.add_note(f"what was done so far is in {run_dir}")
        raise


def _relax_cpu_guard_for(runs: list[RunConfig]) -> None:
    """`relax_cpu_guard` for a process that will train `runs` and nothing else."""
    relax_cpu_guard([(run.env.suite, run.env.backend) for run in runs], max(len(run.members()) for run in runs))


OVERRIDES_FILE = "overrides.yaml"
"""The run folder's record of the command line it was composed from (for resume=)."""

# What a resumed run may change: how it is logged, filmed, checkpointed and
# alerted, how long it trains and on how many processes; not what it trains.
RESUME_MAY_CHANGE = ("total_timesteps", "logger", "video", "checkpoint", "alerts", "runs_root", "run_dir", "resume",
                     "deterministic", "compile_cache", "distributed")


class _KeepOverrides(Hook):
    """Writes overrides.yaml when the run folder is made (and again on resume)."""

    def __init__(self, run_dir: Path, overrides: list[str]):
        self.run_dir, self.overrides = run_dir, list(overrides)

    def on_start(self, run: Any) -> None:
        """Writes the file whole (`write_atomically`)."""
        write_atomically(self.run_dir / OVERRIDES_FILE, yaml.safe_dump([o for o in self.overrides if _key(o) != "resume"]))


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of a resolved config that a resumed run must keep."""
    # an empty mapping (`sweep: {}`) sets nothing: a sweep added on resume would also "change sweep ({} -> unset)"
    return {k: v for k, v in flat_config(config).items() if k.split(".")[0] not in RESUME_MAY_CHANGE and v != {}}


def _replays_a_bad_state(run_dir: Path, cfg: DictConfig) -> str | None:
    """Why resuming the run in `run_dir` with `cfg` would stop again: its last
    session stopped on a bad state (NaN parameters) it did not save, a
    resume replays the same steps bit for bit, and `cfg` stops on it again;
    None when it would not (`alerts.on_nonfinite=continue` trains past it)."""
    summary = read_summary(run_dir)
    if summary.get("status") != "stopped" or not summary.get("bad_state") or cfg.alerts.on_nonfinite != "stop":
        return None
    return (
        f"{run_dir} stopped on a bad state ({summary.get('reason', '')}), and resuming it replays the same steps "
        "to it, so resume=auto leaves it to a person: add alerts.on_nonfinite=continue to train past it, or start "
        "a new run with other settings"
    )


def resume_target(cfg: DictConfig) -> tuple[Path | None, FolderLock | None]:
    """The run folder `resume=` points at: the given folder, or for
    `resume=auto` the run in `run_dir` when one was started there (finished
    or not, whatever its settings: the caller says what then), else the
    newest unfinished run under `runs_root` whose config matches `cfg` but
    for RESUME_MAY_CHANGE and that no process is training; None for a new run.

    With it, the folder's lock where this search took it (a `FolderLock` to
    release), so that jobs requeued at once take different runs; None where
    training takes it (a folder that was named, or `distributed=true`, whose
    processes all search and only process 0 trains in the folder)."""
    if cfg.resume is None:
        return None, None
    if cfg.resume != "auto":
        path = Path(cfg.resume).expanduser()
        if not path.is_dir():
            raise ConfigError(f"resume={cfg.resume}: no such folder; give a run folder, or resume=auto")
        if not (path / "config.yaml").is_file() or not (path / OVERRIDES_FILE).is_file():
            raise ConfigError(
                f"resume={cfg.resume}: not a resumable jaxrl run folder (it needs config.yaml and {OVERRIDES_FILE}); "
                "give a run folder, or resume=auto"
            )
        return path, None
    if cfg.run_dir:
        folder = Path(cfg.run_dir).expanduser()
        if _started(folder):
            return folder, None
        print("resume=auto: no run in run_dir yet; starting it", file=sys.stderr, flush=True)
        return None, None
    want = _identity(OmegaConf.to_container(cfg, resolve=True))
    root = Path(cfg.runs_root).expanduser()
    candidates = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    matches = [
        p for p in candidates
        if (p / OVERRIDES_FILE).is_file() and read_summary(p).get("status") != "finished"
        and _identity(yaml.safe_load((p / "config.yaml").read_text())) == want
    ]
    for path in sorted(matches, key=lambda p: (p / "config.yaml").stat().st_mtime, reverse=True):
        lock = FolderLock(path)
        holder = lock.holder() if cfg.distributed else lock.take()
        if holder is None:
            return path, None if cfg.distributed else lock
        print(f"resume=auto: {path} is being trained by {holder}; leaving it", file=sys.stderr, flush=True)
    print("resume=auto: no unfinished run of this configuration; starting a new one", file=sys.stderr, flush=True)
    return None, None


def _started(folder: Path) -> bool:
    """Whether a run was started in `folder` (a fixed run_dir, or a multirun
    job's folder), for resume=auto to go on there. config.yaml is its first
    file once compiled; overrides.yaml follows only after the states are made
    and the sinks opened (seconds with W&B), so a run killed in between left
    config.yaml alone: it trained nothing, and it starts again in its folder,
    which would otherwise be refused as holding files, at every requeue."""
    return (folder / "config.yaml").is_file()


def resume_overrides(run_dir: Path, overrides: list[str]) -> list[str]:
    """The run's recorded command line, then the new one (later values win);
    only the new one for a run killed before it recorded its own (`_started`)."""
    file = run_dir / OVERRIDES_FILE
    recorded = (yaml.safe_load(file.read_text()) or []) if file.is_file() else []
    return [*recorded, *(o for o in overrides if _key(o) != "resume")]


def check_resumable(run_dir: Path, cfg: DictConfig) -> None:
    """Raises ConfigError when `cfg` would train something else than the run in
    `run_dir` (naming each differing key), or when that run has finished and
    `total_timesteps` was not raised past what it trained."""
    changed = _changes(run_dir, cfg)
    if changed:
        raise ConfigError(
            f"cannot resume {run_dir}: this command changes {', '.join(changed)}; a resumed run may only change "
            f"{', '.join(RESUME_MAY_CHANGE)}"
        )
    done, total = _finished_steps(run_dir), _total_timesteps(cfg)
    if done is not None and total <= done:
        raise ConfigError(
            f"run {run_dir} already finished ({done} env steps per member); to train it longer, "
            f"resume it with total_timesteps larger than {done}"
        )
    from jaxrl.checkpoint import newest_checkpoint_step

    saved = yaml.safe_load((run_dir / "config.yaml").read_text()).get("total_timesteps")
    step = newest_checkpoint_step(run_dir)
    # without a checkpoint the resume starts over, at the new total's first learning rate; one at or
    # past the new total is refused once the checkpoint is read (runner)
    if saved is not None and int(saved) != total and cfg.algo.get("anneal_lr") and step is not None and step < total:
        before, after = 1 - step / int(saved), 1 - step / total
        warnings.warn(
            f"total_timesteps changes from {int(saved)} to {total}: algo.anneal_lr anneals the learning rate over "
            f"the new total, so at this resume (env step {step}) it {'rises' if after > before else 'falls'} from "
            f"{max(before, 0):.0%} to {after:.0%} of algo.lr, then decays to 0 at the new end",
            stacklevel=2,
        )


# keys that name what is trained: when one changes, the other changes follow from it
WHAT_IS_TRAINED = ("algo.name", "env.suite", "env.name", "env.id")


def _changes(run_dir: Path, cfg: DictConfig) -> list[str]:
    """'key (saved -> wanted)' for each key outside RESUME_MAY_CHANGE where `cfg` differs from the run
    in `run_dir`; only the WHAT_IS_TRAINED ones where any of those differs (another algorithm's
    thirty keys would hide the one that matters)."""
    saved = _identity(yaml.safe_load((run_dir / "config.yaml").read_text()))
    wanted = _identity(OmegaConf.to_container(cfg, resolve=True))
    changed = [k for k in sorted(saved.keys() | wanted.keys()) if saved.get(k) != wanted.get(k)]
    changed = [k for k in changed if k in WHAT_IS_TRAINED] or changed
    return [f"{k} ({saved.get(k, 'unset')} -> {wanted.get(k, 'unset')})" for k in changed]


def _finished_already(run_dir: Path, cfg: DictConfig) -> bool:
    """Whether the run in `run_dir` finished with `cfg`'s settings and at least its `total_timesteps`."""
    done = _finished_steps(run_dir)
    return done is not None and _total_timesteps(cfg) <= done and not _changes(run_dir, cfg)


def _total_timesteps(cfg: DictConfig) -> int:
    """`cfg`'s total_timesteps, validated: compared with a finished run's steps
    before the run's config is, a bad value ('abc') would fail the comparison
    with a TypeError instead of the ConfigError that names it."""
    return from_dict(OmegaConf.to_container(cfg, resolve=True)).total_timesteps


def _finished_steps(run_dir: Path) -> int | None:
    """The env steps per member of a finished run in `run_dir`; None when it has not finished."""
    summary = read_summary(run_dir)
    return summary["env_steps"] if summary.get("status") == "finished" else None


def _train_quietly(
    run: RunConfig, resolved: dict[str, Any], resume_dir: Path | None, hooks: Sequence[Hook], writer_dir: Path
) -> dict[str, Any]:
    """Trains as a process other than 0 of several (`distributed=true`): every
    process runs the same loop, since each program call is collective, but
    only process 0 writes; this one trains into a temporary folder it
    deletes, with no logger, video, checkpoint or plot. `hooks` hear the
    run's events as process 0's run folder, `writer_dir`. A resumed run
    starts from the checkpoint in `resume_dir`, process 0's run folder,
    which every process must be able to read (a shared filesystem)."""
    import tempfile

    from jaxrl.runner import train
    from jaxrl.sinks.jsonl import JsonlSink

    quiet = dataclasses.replace(
        run,
        video=dataclasses.replace(run.video, enabled=False),
        checkpoint=dataclasses.replace(run.checkpoint, enabled=False),
    )
    with tempfile.TemporaryDirectory(prefix="jaxrl-process-") as tmp:
        # its metrics.jsonl is thrown away: a full temporary folder must not fail the run
        return train(quiet, Path(tmp) / "run", [JsonlSink(essential=False)], resolved, [_InFolder(h, writer_dir) for h in hooks],
                     resume_from=resume_dir)


class _InFolder(Hook):
    """`hook`, told that the run's folder is `run_dir` (process 0's, not this process's temporary one)."""

    def __init__(self, hook: Hook, run_dir: Path):
        self.hook, self.run_dir = hook, run_dir

    @property
    def __wrapped__(self) -> Hook:
        """The hook it wraps: the runner names a hook's saved state by its class."""
        return self.hook

    def on_start(self, run: Any) -> None:
        """The hook's, with `run_dir` and its name."""
        from jaxrl.files import run_name

        self.hook.on_start(dataclasses.replace(run, run_dir=self.run_dir, name=run_name(self.run_dir)))

    def on_evaluation(self, event: Any) -> None:
        """The hook's."""
        self.hook.on_evaluation(event)

    def on_chunk(self, event: Any) -> None:
        """The hook's."""
        self.hook.on_chunk(event)

    def on_checkpoint(self, event: Any) -> None:
        """The hook's."""
        self.hook.on_checkpoint(event)

    def on_end(self, event: Any) -> None:
        """The hook's."""
        self.hook.on_end(event)

    def on_exit(self, summary: dict[str, Any]) -> None:
        """The hook's."""
        self.hook.on_exit(summary)

    def state(self) -> dict[str, Any] | None:
        """The hook's (this process saves no checkpoint, but the names must match process 0's)."""
        return self.hook.state()

    def load_state(self, state: dict[str, Any]) -> None:
        """The hook's: every process's copy of a hook goes on from process 0's checkpoint."""
        self.hook.load_state(state)


def open_sweep_keys(overrides: list[str]) -> list[str]:
    """Rewrites `sweep.algo.<name>=...` as `++sweep.algo.<name>=...`.

    Hydra only overrides keys that exist in the config, and sweep keys are
    open-ended (any traced hyperparameter of the chosen algorithm, checked by
    `jaxrl.config`), so they are passed as add-or-override. A random search
    space (`loguniform(1e-5,1e-2)`) is quoted, so Hydra passes it on as text.
    """
    return [f"++{quote_distributions(arg)}" if arg.startswith("sweep.") else arg for arg in overrides]


def open_keys_of_swept_groups(overrides: list[str]) -> list[str]:
    """Rewrites `key=value` as `++key=value` when a config group is swept
    (`-m algo=sac,td3 algo.warmup_steps=500`).

    Hydra composes the multirun's own config with no swept group's options
    (PPO, by default), where a key of the swept-in configs is unknown, and
    fails before any job starts. Every job was composed with the overrides
    as given (`check_sweep`), so this adds no key that a job lacks.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    groups = _config_groups()
    parsed = OverridesParser.create().parse_overrides(overrides)
    if not any(o.key_or_group in groups and o.is_sweep_override() for o in parsed):
        return overrides
    # a key inside a node (algo.warmup_steps), set plainly; group choices and Hydra's own keys stay as they are
    return [
        f"++{arg}" if o.type == OverrideType.CHANGE and "." in o.key_or_group and not o.key_or_group.startswith("hydra.")
        else arg
        for arg, o in zip(overrides, parsed)
    ]


def _config_groups() -> list[str]:
    return sorted(p.name for p in resources.files(CONFIG_MODULE).iterdir() if p.is_dir() and not p.name.startswith("_"))


def _hydra_error(err: Exception, overrides: list[str]) -> ConfigError:
    """One line for an error Hydra or OmegaConf raised while composing: the bad
    value and what would be accepted (options of a group, keys of a node)."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(err, OverrideParseException):
        # `open_sweep_keys` added the ++ of a sweep key: the user typed it without
        return ConfigError(
            f"cannot parse {err.override.removeprefix('++')!r}; quote a value with special characters, e.g. \"run_dir='~/runs/a'\""
        )
    if isinstance(err, MissingConfigException) and err.options:
        group, _, name = (err.missing_cfg_file or "").rpartition("/")
        return ConfigError(f"unknown {group} {name!r}; valid options: {', '.join(err.options)}")
    text = str(err)
    if text.startswith("Ambiguous value for argument"):
        arg = text.split("'")[1]
        key, _, values = arg.partition("=")
        form = one_program_form(key, values)
        return ConfigError(
            f"{arg.lstrip('+')} is a Hydra multirun sweep: add -m to run one job per value"
            + (f", or give {form} to train every value in one compiled program" if form else "")
        )
    cause = err.__cause__
    full_key = getattr(cause, "full_key", None)
    if full_key and "not in struct" in str(cause):
        return ConfigError(_unknown_key(full_key, overrides))
    if full_key and str(cause).startswith("Cannot merge"):
        # OmegaConf names the node's own type last: list or dict
        if getattr(cause, "object_type", None) is list:
            return ConfigError(f"{full_key} takes a list: put the mapping in brackets, {full_key}=[{{...}}]")
        return ConfigError(f"{full_key} takes a mapping: set its keys one by one ({full_key}.<key>=value)")
    return ConfigError(text.strip().splitlines()[0])


def one_program_form(key: str, values: str) -> str | None:
    """What trains every value of the Hydra sweep `key=values` in one compiled
    program (`algo.lr=1e-4,1e-3` -> `sweep.algo.lr=[1e-4,1e-3]`, `seed=0,1`
    -> `seeds=2`); None for a key no population can vary (`env`, `algo`, ...)."""
    key = key.lstrip("+~")
    if key.startswith("sweep."):
        return f"{key}=[{values}]"
    if key.startswith("algo."):
        return f"sweep.{key}=[{values}]"
    if key == "seed":
        return f"seeds={len(values.split(','))} (seed, seed+1, ...)"
    return None


def _check_group_choices(overrides: list[str]) -> None:
    """Raises ConfigError for a config group (`algo`, `env`, ...) given
    something other than a config's name, which Hydra would meet with a
    TypeError or ValueError deep inside composition."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = _config_groups()
    for override in OverridesParser.create().parse_overrides(overrides):
        group = override.key_or_group
        if group not in groups or override.is_delete() or override.is_sweep_override():
            continue
        value = override.value()
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(name, str) for name in names):
            options = sorted(p.name.removesuffix(".yaml") for p in resources.files(CONFIG_MODULE).joinpath(group).iterdir()
                             if p.name.endswith(".yaml"))
            raise ConfigError(f"{override.input_line}: {group} takes a config's name, one of {', '.join(options)}")


def _unknown_key(full_key: str, overrides: list[str]) -> str:
    """'unknown key <key>; valid keys of <parent>: ...', the valid keys read
    from the config composed with the command line's group choices alone."""
    groups = _config_groups()
    choices = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in groups]
    cfg = _compose(choices)
    parent, _, _ = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    scope = f"valid keys of {parent}" if parent else "valid top-level keys"
    keys = list(node.keys()) if isinstance(node, DictConfig) else []
    # a mapping in a list (a preset's alert rule) holds only the fields it sets: others may be added
    added = f"; a field it lacks is added with +{full_key}=<value>" if parent.endswith("]") else ""
    return f"unknown key {full_key}; {scope}: {', '.join(str(k) for k in keys)}{added}"


def _compose(overrides: list[str], hydra_config: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_module

    with initialize_config_module(CONFIG_MODULE, version_base=None):
        return compose(config_name="config", overrides=overrides, return_hydra_config=hydra_config)


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `python -m jaxrl.train OVERRIDES` runs; Hydra's and
    OmegaConf's errors become a one-line ConfigError."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        _check_group_choices(overrides)
        return follow_env_name(_compose(overrides), overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise _hydra_error(err, overrides) from None


def follow_env_name(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """`cfg` with `env.id` (the run's label) set to `env.name` when the command
    line picks another env by name and gives no id: a preset's own id
    (`env=mountaincar`'s "mountaincar") would otherwise name the run folder
    and summary.json after an env the run did not train."""
    keys = {_key(o) for o in overrides}
    if "env.name" in keys and "env.id" not in keys:
        cfg.env.id = cfg.env.name
    return cfg


def check_sweep(overrides: list[str]) -> dict[str, RunConfig]:
    """Composes and validates every job of a multirun (`-m`) before Hydra
    launches any, so bad input fails before a sweep folder is made; returns
    the jobs' configs by label ("job 1 (algo.lr=0.01)", named in a refusal).
    ConfigError for `distributed=true`, which takes one launch per run."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)[0]
    except HydraException as err:
        raise _hydra_error(err, overrides) from None
    runs = {}
    for index, job in enumerate(jobs):
        with _refused_as(label := _job_label(index, jobs)):
            cfg = compose_config(job)
        check_multirun_resume(cfg)  # the command's, not one job's
        with _refused_as(label):
            runs[label] = from_dict(OmegaConf.to_container(cfg, resolve=True))
    if any(run.distributed for run in runs.values()):
        # a multirun starts JAX to check its jobs, before a job could join the other processes,
        # and every process would make its own sweep folder
        raise ConfigError(
            "distributed=true does not work with -m: start one distributed run per job instead (e.g. a SLURM "
            "job array, each of whose jobs runs srun python -m jaxrl.train distributed=true with its own values), "
            "or train every value in one distributed run with sweep.algo.<name>=[...]"
        )
    if not any(run.resume == "auto" for run in runs.values()):
        return runs
    sweep_dir = OmegaConf.to_container(_compose(jobs[0], hydra_config=True).hydra.sweep)["dir"]
    if "${now:" in sweep_dir:
        # each launch would make a new folder and find nothing to resume: a requeued multirun would start over
        raise ConfigError(
            f"resume=auto with -m needs a fixed sweep folder, hydra.sweep.dir=<folder>: {sweep_dir} is a new "
            "folder at every launch, so no job would ever be resumed"
        )
    return runs


def check_builds(runs: dict[str, RunConfig]) -> None:
    """Builds every multirun job's env and algorithm (`jaxrl.runner.build`;
    `runs` by label, from `check_sweep`), and traces its training state's shapes, compiling nothing, so that a job
    the config alone cannot refuse (an env name its suite lacks, discrete
    actions for SAC, a state larger than memory) fails before the first job
    trains rather than after it. Starts XLA's backend: call it after
    `_relax_cpu_guard_for`."""
    from jaxrl.runner import build, check_fits, member_keys, population_hyperparams

    for label, run in runs.items():
        with _refused_as(label):
            # as the job will build them; an env made again costs little once its suite is imported
            algo, _ = build(run)
            check_fits(algo, member_keys(run), population_hyperparams(run))


def _job_label(index: int, jobs: list[list[str]]) -> str:
    """'job <index> (<its overrides that some other job lacks>)': which of several jobs (each its
    overrides) a refusal is about; "" for a lone job."""
    if len(jobs) < 2:
        return ""
    everywhere = set.intersection(*(set(job) for job in jobs))
    own = [o for o in jobs[index] if o not in everywhere]
    return f"job {index}" + (f" ({', '.join(own)})" if own else "")


@contextlib.contextmanager
def _refused_as(label: str) -> Iterator[None]:
    """Prefixes a ConfigError raised inside with `label` (a multirun's job), when there is one."""
    try:
        yield
    except ConfigError as err:
        if not label:
            raise
        raise ConfigError(f"{label}: {err}") from None


def check_multirun_resume(cfg: DictConfig) -> None:
    """Raises ConfigError for resume=<folder> in a multirun job: a job composes
    its config once, inside Hydra, without the folder's command line, and
    every job would go on in that one folder."""
    if cfg.resume not in (None, "auto"):
        raise ConfigError(
            f"resume={cfg.resume} does not work with -m: give resume=auto and the first multirun's "
            "hydra.sweep.dir, or resume each job's run folder on its own"
        )


@contextlib.contextmanager
def exit_status() -> Iterator[None]:
    """Turns the ways a run ends into a short message and the documented exit status."""
    try:
        yield
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Stopped as err:
        notes = "".join(f"; {note}" for note in getattr(err, "__notes__", []))
        resumable = "; resumable" if err.resumable else ""
        print(f"stopped: {err.reason}{notes}{resumable} (exit status {RESUMABLE_EXIT})", file=sys.stderr)
        sys.exit(RESUMABLE_EXIT)
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        notes = "".join(f"; {note}" for note in getattr(err, "__notes__", []))
        print(f"interrupted by {signal.Signals(signum).name}{notes}", file=sys.stderr)
        sys.exit(128 + signum)
    except Exception as err:  # noqa: BLE001 (the CLI reports every failure, ending with one line)
        _report_crash(err, "training failed")
        _leave_a_failed_distributed_run()
        sys.exit(1)


def _leave_a_failed_distributed_run() -> None:
    """Ends a failed process of a `distributed=true` run at once, with status 1.

    Its failure is most often a peer that died (a collective that lost it), and
    jax.distributed's shutdown at exit waits for every process: a dead one never
    comes, and the coordination service's heartbeat timeout (100 s) then aborts
    this process with status 134, under a page of C++ logs. Its outputs are
    closed by now (summary.json, alerts, W&B), so nothing is lost by skipping it."""
    jax = sys.modules.get("jax")  # not imported: no run started, so none joined others
    if jax is not None and jax.distributed.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _report_crash(err: Exception, what: str) -> None:
    # a crash is a bug or an environment problem: its traceback is what finds it
    traceback.print_exc()
    notes = "".join(f"; {note}" for note in getattr(err, "__notes__", []))
    print(f"error: {what}: {last_line(err)}{notes}", file=sys.stderr, flush=True)


_FAILED_JOBS: list[str] = []
"""The run folders of this process's multirun jobs that crashed (the basic launcher's)."""


def _jobs_run_here() -> bool:
    """Whether this multirun's jobs run in this process (Hydra's basic launcher),
    not in processes of their own (submitit, Ray), whose exit status is the job's."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().launcher._target_.endswith(".BasicLauncher")


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _exit_finished(signum: int, frame: Any) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> None:
    """Hydra's entry point, for its own flags (-m, --help, --cfg, ...)."""
    job = job_dir()
    elsewhere = job is not None and not _jobs_run_here()
    # a job in a process of its own (submitit, Ray): SIGTERM stops it as it stops a single run
    # (submitit's own handler ignores it), and only while it trains: raised in submitit's code
    # that saves the job's result, it would lose the result
    own_sigterm = elsewhere and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if own_sigterm else None
    try:
        _run_job(cfg, job, elsewhere)
    finally:
        if own_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _run_job(cfg: DictConfig, job: Path | None, elsewhere: bool) -> None:
    """`hydra_main`'s body: trains one run, or one job of a multirun (in a process of its own when
    `elsewhere`), in its own folder `job`."""
    from hydra.core.hydra_config import HydraConfig

    with exit_status():
        overrides = list(HydraConfig.get().overrides.task)
        cfg = follow_env_name(cfg, overrides)
        if job is None and cfg.resume is not None:
            raise ConfigError("resume= works with -m or without Hydra's flags, not with Hydra's other flags")
        check_multirun_resume(cfg)
        resume_dir = None
        if cfg.resume == "auto" and _started(job):
            # resume=auto in a multirun: the job goes on in its own folder (<sweep dir>/<job>),
            # and one that finished there is not trained again
            if _finished_already(job, cfg):
                print(f"{job} finished already", file=sys.stderr, flush=True)
                return
            if why := _replays_a_bad_state(job, cfg):
                # the other jobs still run: refusing would stop the whole multirun
                print(why, file=sys.stderr, flush=True)
                return
            check_resumable(job, cfg)  # names what differs when the folder holds other settings
            resume_dir = job
        try:
            run_from_config(cfg, overrides, resume_dir)
        except Stopped as err:
            if job is None or (err.save and not elsewhere):
                raise
            # a job that diverged (a NaN) is one of the sweep's results, not a reason to leave the
            # others untrained: its summary.json says so, and resume=auto leaves it as it is. A job in
            # a process of its own returns as a finished one does, so that its launcher collects every
            # job and writes the summary; the multirun then exits with status 75 (`main`)
            ending = "the other jobs go on" if not err.save else "resumable" if err.resumable else "a resume starts over"
            print(f"stopped: {err.reason}; {ending}", file=sys.stderr, flush=True)
        except KeyboardInterrupt as err:
            if not elsewhere:
                raise
            # stopped before it trained (while compiling): it has no folder to resume, and starts anew
            signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
            print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
        except ConfigError:
            # refused before training (a folder another process holds): the multirun's own problem
            raise
        except Exception as err:
            if job is None or not _jobs_run_here():
                raise
            # one job's crash (its settings, its env) need not leave the later jobs untrained nor
            # the multirun without its summary; the multirun still ends with exit status 1
            _report_crash(err, f"job {job} failed")
            print("the other jobs go on", file=sys.stderr, flush=True)
            _FAILED_JOBS.append(str(job))


def main() -> None:
    """`python -m jaxrl.train [key=value ...]`."""
    # SIGTERM ends a run as Ctrl-C does: outputs kept, summary written, sinks closed
    signal.signal(signal.SIGTERM, _raise_interrupted)
    warnings.formatwarning = format_warning
    args = open_sweep_keys(sys.argv[1:])
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    with exit_status():
        if not flags:
            run_from_overrides(overrides, own_process=True)
            # the run has ended and said how: a SIGTERM while the process exits (its threads joined,
            # its libraries' exit handlers run) ends it at once, with a finished run's status
            signal.signal(signal.SIGTERM, _exit_finished)
            return
        if set(flags) <= set(MULTIRUN_FLAGS):
            # the basic launcher runs every job in this process
            runs = check_sweep(overrides)
            _relax_cpu_guard_for(list(runs.values()))
            check_builds(runs)
            # Hydra's argparse takes overrides only after its flags: `logger=none -m algo.lr=1e-4,1e-3`
            # would otherwise be refused, with Hydra's usage, as unrecognized arguments
            args = [*flags, *open_keys_of_swept_groups(overrides)]
    sys.argv[1:] = args
    hydra_main()
    if _FAILED_JOBS:
        print(f"error: {len(_FAILED_JOBS)} job(s) failed: {', '.join(_FAILED_JOBS)}", file=sys.stderr)
        sys.exit(1)
    if multirun.STOPPED_JOBS:
        sweep = Path(multirun.STOPPED_JOBS[0]).parent
        print(f"stopped: {len(multirun.STOPPED_JOBS)} job(s) stopped resumably; go on with the same command, "
              f"resume=auto and hydra.sweep.dir={sweep} (exit status {RESUMABLE_EXIT})", file=sys.stderr)
        sys.exit(RESUMABLE_EXIT)
    if multirun.SIGNALLED:
        print(f"interrupted by {multirun.SIGNALLED[0].name}", file=sys.stderr)
        sys.exit(128 + multirun.SIGNALLED[0])


if __name__ == "__main__":
    main()
