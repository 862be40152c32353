"""Humanoid curves images (docs/img/humanoid_cpu.png, humanoid_sac_h200.png): eval return against
env steps and against wall time, for jaxrl run folders and Brax PPO results of bench/peers/brax_ppo.py.

    python bench/plot_humanoid.py --out docs/img/humanoid_cpu.png \
        --run "humanoid_cpu (positional)=runs/a" --run "humanoid_cpu (positional)=runs/b" \
        --brax "Brax PPO (positional)=brax.json" [--no-wall "humanoid_ppo1 (partial)"]
    python bench/plot_humanoid.py --out docs/img/humanoid_sac_h200.png --run "seed 0=runs/c" \
        --machine "one NVIDIA H200" --goal 6000

A label given twice merges its folders' evaluations (a short run with dense evaluations and a
long one with sparse ones). --no-wall leaves a run out of the wall-time panel (one whose wall
time was measured beside other work).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def jaxrl_points(run_dir: Path) -> list[tuple[int, float, float]]:
    """(env steps, wall s, eval return) of member 0's evaluations in a run folder's metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["perf/wall_s"], r["eval/return_mean"]) for r in rows if r.get("member", 0) == 0 and "eval/return_mean" in r]


def brax_points(path: Path) -> list[tuple[int, float, float]]:
    """(env steps, wall s, eval return) of brax_ppo.py's JSON line ("evals": [[steps, wall, return], ...])."""
    line = next(line for line in path.read_text().splitlines() if line.startswith("{"))
    return [tuple(e) for e in json.loads(line)["evals"]]


def main() -> None:
    """Reads the curves and writes the two-panel image."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="LABEL=RUN_DIR (jaxrl)")
    parser.add_argument("--brax", action="append", default=[], help="LABEL=JSON (bench/peers/brax_ppo.py output)")
    parser.add_argument("--no-wall", action="append", default=[], help="a LABEL to leave out of the wall-time panel")
    parser.add_argument("--machine", default="a 2-core CPU", help="where the runs ran, for the title and the wall-time axis")
    parser.add_argument("--goal", type=float, help="draw this eval return as a dashed line")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    curves: dict[str, list] = defaultdict(list)
    for spec, read in [*((s, jaxrl_points) for s in args.run), *((s, brax_points) for s in args.brax)]:
        label, path = spec.rsplit("=", 1)  # a label may hold "=" (env.backend=spring), a path rarely does
        curves[label].extend(read(Path(path)))
    fig, (by_steps, by_wall) = plt.subplots(1, 2, figsize=(11, 4))
    for (label, points), color in zip(curves.items(), itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])):
        steps, wall, ret = zip(*sorted(set(points)))
        by_steps.plot([s / 1e6 for s in steps], ret, "o-", label=label, markersize=3, color=color)
        if label not in args.no_wall:
            by_wall.plot([w / 60 for w in wall], ret, "o-", label=label, markersize=3, color=color)
    by_steps.set(xlabel="env steps (millions)", ylabel="deterministic eval return", title="per env step")
    by_wall.set(xlabel=f"wall time on {args.machine} (minutes, compilation included)", title="per wall minute")
    for ax in (by_steps, by_wall):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if args.goal is not None:
            ax.axhline(args.goal, color="grey", linestyle="--", linewidth=0.8)
    fig.suptitle(f"Brax humanoid on {args.machine}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
