"""Training from Python: `jaxrl.run(...)` returns a `Result`.

`run` is `python -m jaxrl.train` as a function: the same Hydra configs,
composed through Hydra's compose API (`jaxrl.train.compose_config`), the same
validation, the same training path (`jaxrl.train.run_from_overrides`, resume
included), the same run folder. In Jupyter or Colab the console sink draws its progress bar in
the output cell. Named `run` because `jaxrl.train` is the command-line module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxrl.events import Hook
from jaxrl.sinks.base import RunInfo

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["Result", "run"]


@dataclasses.dataclass(frozen=True)
class Result:
    """A finished run: its folder, summary, metrics and policy.

    run_dir: the run folder (config.yaml, metrics.jsonl, summary.json,
        policy.msgpack, curves.png, videos/), made absolute when the Result is
        made, so it stays the same folder after `os.chdir`.
    summary: the content of summary.json (per-member lists under "final").
    """

    run_dir: Path
    summary: dict[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(os.path.abspath(self.run_dir)))

    @classmethod
    def load(cls, run_dir: str | Path) -> Result:
        """The Result of a run folder written earlier (by `run` or the command line).

        Raises FileNotFoundError, saying why, for a folder without summary.json
        (a run still training or killed, or no run folder) and for a Hydra
        multirun's folder (whose summary.json is the multirun's: give a job's)."""
        from jaxrl.files import folder_path, refuse_multirun_folder

        run_dir = folder_path(run_dir)
        refuse_multirun_folder(run_dir)
        if not (run_dir / "summary.json").is_file():
            if (run_dir / "config.yaml").is_file():
                raise FileNotFoundError(
                    f"no summary.json in {run_dir}: the run has not ended (it is training, or was killed: "
                    f"resume={run_dir} goes on); load_policy reads its last evaluated policy meanwhile"
                )
            what = "it is not a jaxrl run folder" if run_dir.is_dir() else "no such folder"
            raise FileNotFoundError(f"no summary.json in {run_dir}: {what}")
        return cls(run_dir, json.loads((run_dir / "summary.json").read_text()))

    @property
    def metrics(self) -> pd.DataFrame:
        """metrics.jsonl as a table: one row per logged point and member, with
        columns step, member, seed, the sweep values ("algo.lr", ...) and the
        metrics ("eval/return_mean", "train/episode_return", "loss/policy", ...);
        NaN where a row has no value (evaluations run every `eval.every` points).
        Read from the folder at each access, so it follows a resumed run."""
        import pandas as pd

        return pd.read_json(self.run_dir / "metrics.jsonl", lines=True)

    @property
    def final(self) -> pd.DataFrame:
        """The final evaluation, one row per member: member, seed, the sweep
        values, and "eval/return_mean", "eval/return_std", "eval/length_mean"."""
        import pandas as pd

        members = self.summary.get("members") or [{"seed": s} for s in self.summary["seeds"]]
        table = pd.DataFrame(members)
        table.insert(0, "member", range(len(members)))
        for key, values in self.summary.get("final", {}).items():
            table[key] = values
        return table

    def policy(self, seed: int | None = None, member: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """The trained deterministic policy of one member, as `jaxrl.load_policy`
        gives it (by default member 0): NumPy observation [*obs_shape] or [N, *obs_shape] -> action."""
        from jaxrl.policy import load_policy

        return load_policy(self.run_dir, seed=seed, member=member)

    @property
    def curves(self) -> Path | None:
        """curves.png (return against env steps, every member), or None when it was not drawn."""
        path = self.run_dir / "curves.png"
        return path if path.exists() else None

    @property
    def videos(self) -> list[Path]:
        """Every video of the run, in the order of training: mp4 files, or
        Brax's HTML viewer where no OpenGL could render one; `step<N>` (every
        `video.every` evaluations) by N, then `final`, each followed by the
        films of other members made later (`python -m jaxrl.film`:
        `step<N>-member<M>`, `final-member<M>`) by M."""
        folder = self.run_dir / "videos"
        # a hidden ".<name>.tmp.mp4" is a video a kill stopped mid-encode (jaxrl.video.write_mp4)
        files = [p for p in folder.glob("[!.]*") if p.suffix in (".mp4", ".html")] if folder.is_dir() else []
        return sorted(files, key=_training_order)

    @property
    def video(self) -> Path | None:
        """The final episode's video of member `video.member` (videos/final.mp4,
        else final.html), or None."""
        for name in ("final.mp4", "final.html"):
            if (self.run_dir / "videos" / name).exists():
                return self.run_dir / "videos" / name
        return None


def _training_order(video: Path) -> tuple[float, float, str]:
    """Where `video` (videos/<name>) comes in `Result.videos`: its policy's env
    step (final last), then its member (the one training films first), then its
    name; a file jaxrl did not name comes after every one it did."""
    named = re.fullmatch(r"(?:final|step(\d+))(?:-member(\d+))?", video.stem)
    if named is None:
        return math.inf, math.inf, video.name
    step, member = named.groups()
    return (math.inf if step is None else int(step)), (-1 if member is None else int(member)), video.name


class _RunFolder(Hook):
    """Remembers the run folder the trainer chose (`run_dir_for`), so `run`
    need not choose it a second time."""

    run_dir: Path | None = None

    def on_start(self, run: RunInfo) -> None:
        self.run_dir = Path(run.run_dir)


def _quoted(value: str) -> str:
    """`value` as a Hydra quoted string, read back verbatim: the grammar gives
    `~`, spaces, `=`, brackets a meaning outside quotes. Inside, a quote is
    escaped, and so are the backslashes before a quote or the closing quote."""
    return "'" + re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\'" if m[2] else ""), value) + "'"


def run(
    algo: str | None = None,
    env: str | None = None,
    seeds: int | None = None,
    overrides: Sequence[str] = (),
    *,
    experiment: str | None = None,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    hooks: Sequence[Hook] = (),
) -> Result:
    """Trains like `python -m jaxrl.train` and returns the Result.

    algo, env, experiment: options of those config groups (e.g. "sac",
        "humanoid", "humanoid_ppo"); None keeps the config's choice (ppo on
        mountaincar_continuous, or what the experiment sets).
    seeds: seeds trained side by side in one compiled program, a positive int
        (None: the config's, 2).
    overrides: any other command-line key=value strings, e.g. ["total_timesteps=1e5",
        "algo.lr=1e-3", "sweep.algo.lr=[1e-4,1e-3]", "logger=none"]. Everything
        trains in one compiled program: a sweep is `sweep.algo.<name>=[a,b]`;
        Hydra's `-m` and its `key=a,b` (one job per value) are the command line's.
        They come after algo, env, seeds and the rest, as on a command line: a key
        given both ways takes its value in `overrides`.
    run_dir: the run folder (default: a new runs/<time>-<algo>-<env>).
    resume: a run folder to go on from its newest checkpoint, or "auto" (the
        newest unfinished run of this configuration, else a new run), as
        `resume=` on the command line; the Result is then that folder's.
    hooks: your own `jaxrl.events.Hook`s, told of the run's start, each
        evaluation and chunk, its end and how it ended, on the host between
        chunks, after the built-in ones (policy file, videos, curves).

    With `distributed=true`, every process returns a Result for process 0's
    run folder (only process 0 writes; another reads the folder only where
    it shares process 0's filesystem), with its own, equal, summary.

    Raises `jaxrl.config.ConfigError` (one line saying what is wrong and what
    is accepted) for bad input, before anything compiles or is written; a
    failure during training is re-raised with a note naming the run folder.
    """
    from jaxrl.train import compose_config, open_sweep_keys, run_from_overrides

    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, Sequence):
        # a lone string would be read one character at a time, a dict by its keys, None not at all
        example = repr(overrides) if isinstance(overrides, str) else "'total_timesteps=1e5'"
        raise TypeError(f"overrides={overrides!r} ({type(overrides).__name__}): overrides is a list of key=value strings, "
                        f"e.g. [{example}]")
    _check_hooks(hooks)
    groups = {"algo": algo, "env": env, "experiment": experiment}
    _check_input(groups, seeds, overrides)
    args = [f"{group}={choice}" for group, choice in groups.items() if choice]
    if seeds is not None:
        args.append(f"seeds={int(seeds)}")
    args += [f"{key}={_quoted(str(value))}" for key, value in (("run_dir", run_dir), ("resume", resume)) if value is not None]
    folder = _RunFolder()
    overrides = open_sweep_keys([*args, *overrides])
    _refuse_multirun(overrides)
    summary = run_from_overrides(overrides, hooks=[folder, *hooks])
    if folder.run_dir is None:
        # resume=auto in a run_dir whose run finished already: nothing trained, so no hook heard of the folder
        folder.run_dir = Path(compose_config(overrides).run_dir).expanduser()
    return Result(folder.run_dir, summary)


def _check_hooks(hooks: Any) -> None:
    """TypeError unless `hooks` is a list (or tuple) of `Hook`s: checked here, since the
    runner would otherwise find out at the run's start, after compiling, with a folder made."""
    if isinstance(hooks, (str, bytes)) or not isinstance(hooks, Sequence):
        raise TypeError(f"hooks={hooks!r} ({type(hooks).__name__}): hooks is a list of jaxrl.events.Hook instances")
    for i, hook in enumerate(hooks):
        if not isinstance(hook, Hook):
            raise TypeError(
                f"hooks[{i}]={hook!r} ({type(hook).__name__}) is not a jaxrl.events.Hook: "
                "subclass Hook and override the methods you need (every one is optional)"
            )


def _check_input(groups: dict[str, Any], seeds: Any, overrides: Sequence[Any]) -> None:
    """ConfigError for a config group's choice that is no name (`env=["a"]`), `seeds`
    that is not a positive int, or an override that is no key=value string."""
    from jaxrl.config import ConfigError
    from jaxrl.train import MULTIRUN_FLAGS

    for group, choice in groups.items():
        if choice is not None and not isinstance(choice, str):
            # Hydra would read a list as a config group sweep and fail in several lines
            raise ConfigError(f"{group}={choice!r} ({type(choice).__name__}): {group} takes a config's name, a string")

    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, numbers.Integral) or seeds < 1):
        raise ConfigError(f"seeds={seeds!r} ({type(seeds).__name__}): seeds takes a positive int, the number of seeds")
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(
                f"override {item!r} ({type(item).__name__}) is not a string; overrides takes key=value strings, "
                "e.g. ['total_timesteps=1e5']"
            )
        if item in MULTIRUN_FLAGS:
            raise ConfigError(
                f"{item!r} is the command line's Hydra multirun flag (python -m jaxrl.train -m algo.lr=1e-4,1e-3: "
                "one job per value); jaxrl.run trains one compiled program: sweep in it with sweep.algo.lr=[1e-4,1e-3]"
            )
        if item.startswith("-"):
            raise ConfigError(f"{item!r} is a command-line flag; jaxrl.run takes key=value overrides")


def _refuse_multirun(overrides: list[str]) -> None:
    """ConfigError for a Hydra sweep (`algo.lr=1e-4,1e-3`, `choice(...)`, `range(...)`):
    one job per value, which only the command line's -m runs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from jaxrl.config import ConfigError
    from jaxrl.train import one_program_form

    parser = OverridesParser.create()
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except Exception:  # noqa: BLE001 (the trainer reports what cannot be parsed, in its own words)
            continue
        if override.is_sweep_override():
            value = text.split("=", 1)[1] if "=" in text else ""
            form = one_program_form(override.key_or_group, value) if "(" not in value else None
            example = form or "sweep.algo.lr=[1e-4,1e-3]"
            raise ConfigError(
                f"{text.lstrip('+')} is a Hydra multirun sweep (one job per value: the command line's "
                f"python -m jaxrl.train -m {text.lstrip('+')}); jaxrl.run trains one compiled program: "
                f"sweep in it with {example}"
            )
