"""The runner's PPO throughput in two checkouts, alternating, for a refactor's before/after.

Each round trains the `make bench` configuration (one seed, metrics.jsonl only)
once per checkout, each in a fresh subprocess that imports jaxrl from that
checkout; alternating spreads the machine's noise over both. Prints each
run's steps/s (training only, compilation excluded), the medians and their
ratio.

    git worktree add /tmp/before <commit>
    python bench/compare.py /tmp/before . [--steps 491520] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# The program each subprocess runs; it uses only the API both sides share.
PROGRAM = """
import json, sys, tempfile
from pathlib import Path
import jaxrl
from jaxrl.config import from_dict
from jaxrl.runner import train
from jaxrl.sinks.jsonl import JsonlSink
raw = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    summary = train(from_dict(raw), Path(tmp) / "run", [JsonlSink()], raw)
print(json.dumps({"sps": summary["sps"], "compile_s": summary["compile_s"]}))
"""


def config(steps: int) -> dict:
    """bench_ppo.py's configuration: 16 envs x 256 steps, 4 epochs x 32 minibatches, 2x256 tanh."""
    return {
        "algo": {
            "name": "ppo", "num_envs": 16, "rollout_length": 256, "num_epochs": 4, "num_minibatches": 32,
            "hidden": [256, 256], "activation": "tanh", "normalize_obs": True, "normalize_reward": True,
        },
        "env": {"suite": "gymnax", "name": "MountainCarContinuous-v0", "id": "mountaincar_continuous"},
        "seeds": 1, "total_timesteps": steps, "num_logs": 20,
        "eval": {"every": 1000, "episodes": 4}, "video": {"enabled": False},
        "logger": {"backend": "none"},
    }


def run(tree: Path, steps: int) -> dict:
    """One training run with jaxrl imported from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    env.pop("XLA_FLAGS", None)  # each side installs its own CPU guard
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps(config(steps))],
        env=env, cwd=tree, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--steps", type=int, default=491_520, help="env steps (a multiple of 4096)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(args.rounds):
        for side in ("before", "after"):
            result = run(getattr(args, side), args.steps)
            rates[side].append(result["sps"])
            print(f"round {i + 1} {side:6s} {result['sps']:>9,.0f} steps/s  compile {result['compile_s']:.1f} s", flush=True)
    before, after = statistics.median(rates["before"]), statistics.median(rates["after"])
    print(json.dumps({"before_sps": round(before), "after_sps": round(after), "after_over_before": round(after / before, 3)}))


if __name__ == "__main__":
    main()
