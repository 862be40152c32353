"""Each algorithm's MountainCarContinuous preset, 4 vmapped seeds, from the command line.

Runs `python -m jaxrl.train <preset> seeds=4` once per algorithm, as a user
would (video and wandb off, so the figures are training alone), and prints a
markdown table: env steps per seed, process wall time (imports and compile
included), compile time, training steps/s, and every seed's final
deterministic evaluation return.

    python bench/bench_algos.py [--only ppo,sac] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESETS = {
    "ppo": ["algo=ppo"],
    "a2c": ["experiment=a2c_mountaincar"],
    "trpo": ["experiment=trpo_mountaincar"],
    "ddpg": ["experiment=ddpg_mountaincar"],
    "td3": ["experiment=td3_mountaincar"],
    "sac": ["experiment=sac_mountaincar"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PRESETS), help="comma-separated algorithms")
    parser.add_argument("--seed", type=int, default=0, help="first of the 4 seeds")
    args = parser.parse_args()
    rows = []
    for algo in args.only.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            command = [sys.executable, "-m", "jaxrl.train", *PRESETS[algo], "seeds=4", f"seed={args.seed}",
                       "logger=none", "video.enabled=false", f"run_dir={run_dir}"]
            start = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
                rows.append(f"| {algo} | failed (exit {proc.returncode}) | | | | |")
                continue
            summary = json.loads((run_dir / "summary.json").read_text())
        returns = ", ".join(f"{r:.1f}" for r in summary["final"]["eval/return_mean"])
        rows.append(
            f"| {algo} | `{' '.join(PRESETS[algo])}` | {summary['env_steps']:,} | {wall:.0f} | "
            f"{summary['compile_s']:.0f} | {summary['sps']:,.0f} | {returns} |"
        )
        print(rows[-1], flush=True)
    print("\n| algo | preset | env steps / seed | wall s | compile s | steps/s (4 seeds) | final eval return per seed |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
