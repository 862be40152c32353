"""The CLI's PPO (or SAC) throughput in two checkouts, alternating, for a refactor's before/after.

Each round trains the `make bench` configuration (one seed unless --seeds,
metrics.jsonl only) once per checkout, each as `python -m jaxrl.train` in a fresh process
that imports jaxrl from that checkout, as a user runs it: with the XLA flags
that checkout's CLI chooses (`summary.json`'s `xla_flags`). Alternating
spreads the machine's noise over both. Prints each run's steps/s (training
only, compilation excluded), the medians and their ratio.

    git worktree add /tmp/before <commit>
    python bench/compare.py /tmp/before . [--algo ppo|sac] [--seeds 1] [--steps N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def overrides(algo: str, steps: int, seeds: int) -> list[str]:
    """ppo: bench_ppo.py's configuration (16 envs x 256 steps, 4 epochs x 32
    minibatches, 2x256 tanh); sac: the paper's settings (1 env, one gradient
    step of batch 256 per env step, 2x256 relu), after 1,000 random steps."""
    common = ["env=mountaincar_continuous", f"seeds={seeds}", f"total_timesteps={steps}", "eval.every=1000", "eval.episodes=4",
              "video.enabled=false", "logger=none", "alerts=none", "checkpoint.enabled=false"]
    if algo == "sac":
        return ["algo=sac", "algo.num_envs=1", "algo.rollout_length=1", "algo.gradient_steps=1", "algo.batch_size=256",
                "algo.warmup_steps=1000", "algo.hidden=[256,256]", "algo.activation=relu", "num_logs=10", *common]
    return [
        "algo=ppo", "algo.num_envs=16", "algo.rollout_length=256", "algo.num_epochs=4", "algo.num_minibatches=32",
        "algo.hidden=[256,256]", "algo.activation=tanh", "algo.normalize_obs=true", "algo.normalize_reward=true",
        "num_logs=20", *common,
    ]


def run(tree: Path, algo: str, steps: int, seeds: int) -> dict:
    """One training run of `python -m jaxrl.train` with jaxrl imported from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    env.pop("XLA_FLAGS", None)  # each side chooses its own
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "jaxrl.train", *overrides(algo, steps, seeds), f"run_dir={tmp}/run"],
            env=env, cwd=tree, capture_output=True, text=True, check=True,
        )
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return {key: summary[key] for key in ("sps", "compile_s", "xla_flags")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--algo", choices=("ppo", "sac"), default="ppo")
    parser.add_argument("--seeds", type=int, default=1, help="vmapped seeds; steps/s counts them all")
    parser.add_argument("--steps", type=int, help="env steps per seed (default: ppo 491,520, a multiple of 4096; sac 11,000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    steps = args.steps or {"ppo": 491_520, "sac": 11_000}[args.algo]
    rates: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(args.rounds):
        for side in ("before", "after"):
            result = run(getattr(args, side), args.algo, steps, args.seeds)
            rates[side].append(result["sps"])
            print(
                f"round {i + 1} {side:6s} {result['sps']:>9,.0f} steps/s  compile {result['compile_s']:.1f} s  "
                f"XLA_FLAGS={result['xla_flags']!r}",
                flush=True,
            )
    before, after = statistics.median(rates["before"]), statistics.median(rates["after"])
    print(json.dumps({"before_sps": round(before), "after_sps": round(after), "after_over_before": round(after / before, 3)}))


if __name__ == "__main__":
    main()
