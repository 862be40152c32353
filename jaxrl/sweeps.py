"""Search spaces over traced hyperparameters, and what a sweep leaves behind.

A sweep is one population trained by one compiled program: the grid of every
`sweep.algo.<name>=[...]` list, times `sweep.samples` random draws of every
`sweep.algo.<name>=loguniform(a,b) | uniform(a,b) | choice(a,b,...)`, times
`seeds`. Draws come from `sweep.seed` alone, so a run's members can be rebuilt
from its config.yaml (`load_policy` does). `SweepResults` writes sweep.csv,
prints a leaderboard and draws sweep.png at the end of a run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxrl.errors import ConfigError
from jaxrl.events import EvaluationDone, Hook, RunEnded
from jaxrl.files import read_jsonl, write_atomically
from jaxrl.sinks.base import RunInfo
from jaxrl.sinks.console import echo

__all__ = ["DISTRIBUTIONS", "Distribution", "Sweep", "SweepResults", "leaderboard", "parse_sweep", "quote_distributions"]

DISTRIBUTIONS = ("loguniform", "uniform", "choice")
_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$")
RETURN = "eval/return_mean"


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A random search dimension: `kind` in DISTRIBUTIONS and its arguments
    (low, high for the uniforms; the options for choice)."""

    kind: str
    args: tuple[float, ...]

    def sample(self, rng: np.random.Generator, n: int) -> list[float]:
        """`n` draws as Python floats."""
        if self.kind == "choice":
            return [self.args[i] for i in rng.integers(len(self.args), size=n)]
        low, high = self.args
        if self.kind == "loguniform":
            return [float(x) for x in np.exp(rng.uniform(math.log(low), math.log(high), size=n))]
        return [float(x) for x in rng.uniform(low, high, size=n)]

    def __str__(self) -> str:
        return f"{self.kind}({','.join(f'{a:g}' for a in self.args)})"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A validated search space.

    grid: ((name, values), ...) crossed with each other;
    random: ((name, Distribution), ...) drawn jointly `samples` times, each
    draw crossed with the whole grid (Ray Tune's num_samples);
    seed: the seed of the draws.
    """

    grid: tuple[tuple[str, tuple[float, ...]], ...] = ()
    random: tuple[tuple[str, Distribution], ...] = ()
    samples: int = 1
    seed: int = 0

    def __bool__(self) -> bool:
        return bool(self.grid or self.random)

    @property
    def names(self) -> list[str]:
        """The swept hyperparameters, grid first."""
        return [name for name, _ in self.grid] + [name for name, _ in self.random]

    def repeats(self) -> str | None:
        """Why some of `points()` are identical settings, whose members would train
        identical copies (`choice` draws with replacement); None when none repeat."""
        points = self.points()
        repeated = len(points) - len({tuple(sorted(point.items())) for point in points})
        if not repeated:
            return None
        grid = " ".join(f"sweep.algo.{name}=[{','.join(f'{a:g}' for a in dist.args)}]" for name, dist in self.random)
        return (
            f"{repeated} of the sweep's {len(points)} settings repeat another (choice draws with replacement): "
            f"their members train identical copies of others; as a grid, {grid}, each option trains once"
        )

    def points(self) -> list[dict[str, float]]:
        """One {name: value} per setting: draws (outer) x grid (inner); [{}] for no sweep."""
        rng = np.random.default_rng(self.seed)
        draws = {name: dist.sample(rng, self.samples) for name, dist in self.random}
        grid = list(itertools.product(*(values for _, values in self.grid)))
        return [
            {**{name: draws[name][i] for name, _ in self.random}, **dict(zip((n for n, _ in self.grid), point))}
            for i in range(self.samples if self.random else 1)
            for point in grid
        ]


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where} must be finite, got {text.strip()}")
    return value


def _distribution(text: str, where: str) -> Distribution:
    """Parses "loguniform(1e-5,1e-2)" and its kin; raises ConfigError naming what is accepted."""
    match = _CALL.match(text)
    accepted = "a list [a,b,...], loguniform(low,high), uniform(low,high) or choice(a,b,...)"
    if not match or match.group(1) not in DISTRIBUTIONS:
        raise ConfigError(f"{where}={text} is not a search space; give {accepted}")
    kind, body = match.groups()
    args = tuple(_number(a, f"{where}={text}") for a in body.split(",") if a.strip()) if body.strip() else ()
    if kind == "choice":
        if not args:
            raise ConfigError(f"{where}={text} has no options; give choice(a,b,...)")
        return Distribution(kind, args)
    if len(args) != 2:
        raise ConfigError(f"{where}={text} takes two bounds, got {len(args)}; give {kind}(low,high), e.g. {kind}(1e-4,1e-2)")
    if not args[0] < args[1]:
        raise ConfigError(f"{where}={text} needs two bounds low < high, e.g. {kind}(1e-4,1e-2)")
    if kind == "loguniform" and args[0] <= 0:
        raise ConfigError(f"{where}={text} needs low > 0 (it samples the log of the value)")
    return Distribution(kind, args)


def _mapping(value: Any, where: str, keys: str) -> dict[str, Any]:
    """`value` (None: empty) as a dict; ConfigError for a scalar or list given
    in its place (`sweep=foo`), which Hydra lets through since `sweep: {}` has no schema."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} takes a mapping: set its keys one by one ({keys}), got {where}={value!r}")
    return dict(value)


def parse_sweep(algo_name: str, traced: Sequence[str], raw: Any, static: Sequence[str] = ()) -> Sweep:
    """The `sweep` config node as a Sweep; ConfigError (one line) for anything
    but traced hyperparameters with lists or distributions, a positive
    `samples` and an integer `seed`. `static`: the algorithm's other settings
    (those that shape the program), which a Hydra multirun varies instead."""
    raw = _mapping(raw, "sweep", "sweep.algo.<hyperparameter>=[a,b], sweep.samples=N, sweep.seed=S")
    algo_values = _mapping(raw.pop("algo", None), "sweep.algo", "sweep.algo.<hyperparameter>=[a,b] or =loguniform(low,high)")
    samples, seed = raw.pop("samples", None), raw.pop("seed", 0)
    if raw:
        raise ConfigError(
            f"unknown sweep key(s) {', '.join(f'sweep.{k}' for k in raw)}; "
            "valid: sweep.algo.<hyperparameter>, sweep.samples, sweep.seed"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigError(f"sweep.seed must be a non-negative integer, got {seed!r}")
    grid, random = [], []
    for name, values in algo_values.items():
        where = f"sweep.algo.{name}"
        if name in static:
            raise ConfigError(
                f"{where} is not a sweepable hyperparameter of {algo_name}; sweepable: {', '.join(traced)}. "
                f"A setting compiled into the program (a shape or a constant of it) needs one program per value: "
                f"Hydra multirun, -m algo.{name}=<a>,<b>"
            )
        if name not in traced:
            raise ConfigError(f"unknown hyperparameter {where} of {algo_name}; sweepable: {', '.join(traced)}")
        if isinstance(values, str):
            random.append((name, _distribution(values, where)))
            continue
        values = values if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise ConfigError(f"{where} is empty; give a list such as [1e-4,3e-4]")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise ConfigError(f"{where} must be a list of numbers, got {list(values)}")
        if bad := [v for v in values if not math.isfinite(v)]:
            raise ConfigError(f"{where} must be a finite number, got {bad[0]}")
        if twice := [v for i, v in enumerate(values) if float(v) in map(float, values[:i])]:
            raise ConfigError(
                f"{where} lists {twice[0]} more than once: its members would be identical copies (the same "
                "setting and seeds); give each value once, and more seeds with seeds="
            )
        grid.append((name, tuple(float(v) for v in values)))
    if samples is None:
        if random:
            raise ConfigError(
                f"sweep.algo.{random[0][0]}={random[0][1]} is a random search: say how many draws, e.g. sweep.samples=16"
            )
        samples = 1
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        raise ConfigError(f"sweep.samples must be a positive integer, got {samples!r}")
    if samples > 1 and not random:
        raise ConfigError(
            f"sweep.samples={samples} needs a random search space, e.g. sweep.algo.lr=loguniform(1e-5,1e-2); "
            "a grid is run once per seed"
        )
    if seed and not random:
        raise ConfigError(
            f"sweep.seed={seed} seeds the draws of a random search, and this sweep draws nothing; "
            "the members' own seeds come from seed= and seeds="
        )
    return Sweep(tuple(grid), tuple(random), samples, seed)


def quote_distributions(arg: str) -> str:
    """`sweep.algo.lr=loguniform(1e-5,1e-2)` with the value quoted for Hydra,
    whose override grammar would otherwise read it as a call to one of its own
    functions (and `choice(...)` as a multirun sweep). Any call is quoted, so
    that an unknown one gets jaxrl's message listing the accepted forms."""
    key, sep, value = arg.partition("=")
    if sep and _CALL.match(value) and "'" not in value and '"' not in value:
        return f"{key}='{value.strip()}'"
    return arg


def _setting(member: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in member.items() if k != "seed")


def setting_labels(members: list[dict[str, Any]]) -> dict[int, str]:
    """Each member's setting, its hyperparameters without its seed, as a short
    label by member index: {0: "lr=0.001 gamma=0.99", ...} (curves.png's legend)."""
    return {i: " ".join(f"{k.removeprefix('algo.')}={v:g}" for k, v in _setting(m)) for i, m in enumerate(members)}


def leaderboard(members: list[dict[str, Any]], final: Sequence[float]) -> list[dict[str, Any]]:
    """Per setting (a member's hyperparameters without its seed): the mean,
    standard deviation and minimum of the final return over its members
    (its seeds, times the draws that gave it: `choice` may draw a value
    twice), and their count under "members", best mean first."""
    by_setting: dict[tuple, list[float]] = {}
    for member, value in zip(members, final):
        by_setting.setdefault(_setting(member), []).append(float(value))
    rows = [
        {**dict(setting), "members": len(v), "mean": float(np.mean(v)), "std": float(np.std(v)), "min": float(np.min(v))}
        for setting, v in by_setting.items()
    ]
    return sorted(rows, key=lambda r: -r["mean"] if math.isfinite(r["mean"]) else math.inf)


def format_leaderboard(rows: list[dict[str, Any]], names: Sequence[str]) -> str:
    """The leaderboard as an aligned text table."""
    header = ["rank", *names, "members", "mean", "std", "min"]
    lines = [
        [str(i + 1), *(f"{row[n]:.4g}" for n in names), str(row["members"]), *(f"{row[k]:.2f}" for k in ("mean", "std", "min"))]
        for i, row in enumerate(rows)
    ]
    widths = [max(len(c) for c in col) for col in zip(header, *lines)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in [header, *lines])


def plot_sweep(members: list[dict[str, Any]], final: Sequence[float], names: Sequence[str], path: Path) -> Path:
    """sweep.png: the final return against each swept value, one point per
    member; a log axis where the values span two decades or more. Drawn on
    matplotlib's Agg canvas, not pyplot, so that a notebook's or script's own
    backend and open figures are left as they were."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(names), 3.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        x = np.array([m[name] for m in members], float)
        ax.scatter(x, final, s=14, alpha=0.7)
        if x.min() > 0 and x.max() / x.min() >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"final {RETURN}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


class SweepResults(Hook):
    """At the end of a sweep: sweep.csv (one row per member: hyperparameters,
    seed, final and best evaluation return), a leaderboard on stdout and
    sweep.png. sweep.csv or the plot failing is a warning, never a lost run."""

    def __init__(self, members: list[dict[str, Any]], run_dir: Path):
        self.members, self.run_dir = members, run_dir
        self.names = [k for k in members[0] if k != "seed"]
        # NaN until a member has a finite evaluation: np.fmax passes over NaN
        self.best = np.full(len(members), np.nan)

    def on_start(self, run: RunInfo) -> None:
        """A resumed run: each member's best evaluation of the earlier sessions, from metrics.jsonl."""
        path = run.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        for row in read_jsonl(path):
            value, member = row.get(RETURN), row.get("member")
            if value is not None and member is not None and 0 <= member < len(self.best):
                self.best[member] = np.fmax(self.best[member], value)

    def on_evaluation(self, event: EvaluationDone) -> None:
        """Keeps each member's best evaluation so far."""
        self.best = np.fmax(self.best, np.asarray(event.results[RETURN], float))

    def on_end(self, event: RunEnded) -> None:
        """Writes sweep.csv and sweep.png, prints the leaderboard."""
        final = event.summary["final"][RETURN]
        # training is over: a table that cannot be written is a warning, never a failed run
        try:
            text = io.StringIO(newline="")
            writer = csv.writer(text)
            writer.writerow(["member", *self.names, "seed", "final_return", "best_return"])
            for i, (member, value, best) in enumerate(zip(self.members, final, self.best)):
                writer.writerow([i, *(repr(member[n]) for n in self.names), member["seed"], repr(value), repr(float(best))])
            write_atomically(self.run_dir / "sweep.csv", text.getvalue())
        except Exception as err:  # noqa: BLE001 (a table is never worth a lost run)
            warnings.warn(f"could not write sweep.csv: {type(err).__name__}: {err}", stacklevel=2)
        board = format_leaderboard(leaderboard(self.members, final), self.names)
        echo(f"sweep leaderboard (final {RETURN} over members, best first):\n{board}")
        try:
            plot_sweep(self.members, final, self.names, self.run_dir / "sweep.png")
        except Exception as err:  # noqa: BLE001 (a plot is never worth a lost run)
            warnings.warn(f"could not draw sweep.png: {type(err).__name__}: {err}", stacklevel=2)
        sys.stdout.flush()
