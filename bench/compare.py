"""The CLI's PPO (or SAC) throughput in two checkouts, alternating, for a refactor's before/after.

Each round trains the `make bench` configuration (one seed unless --seeds,
metrics.jsonl only) once per checkout, each as `python -m jaxrl.train` in a fresh process
that imports jaxrl from that checkout, as a user runs it: with the XLA flags
that checkout's CLI chooses (`summary.json`'s `xla_flags`). Alternating
spreads the machine's noise over both. Prints each run's steps/s (training
only, compilation excluded) and the largest resident memory of its
processes, the medians and their ratio. With --processes N, each run is N
processes joined by jax.distributed on 127.0.0.1 (`distributed=true`), the
population spread over them.

    git worktree add /tmp/before <commit>
    python bench/compare.py /tmp/before . [--algo ppo|sac] [--seeds 1] [--steps N] [--rounds 3] \
        [--processes 2] [--set algo.buffer_size=100000 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
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


def run(tree: Path, args: list[str], processes: int = 1) -> dict:
    """One training run of `python -m jaxrl.train ARGS` with jaxrl imported from
    `tree`, as `processes` processes joined by jax.distributed when more than 1;
    its summary's sps, compile_s and xla_flags, and max_rss_mib: the largest
    resident memory of one process."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    env.pop("XLA_FLAGS", None)  # each side chooses its own
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{s.getsockname()[1]}", JAX_NUM_PROCESSES=str(processes))
        args = [*args, "distributed=true"]
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "jaxrl.train", *args, f"run_dir={tmp}/run"]
        logs = [Path(tmp) / f"stderr{i}" for i in range(processes)]
        pids = []
        for i, log in enumerate(logs):
            with log.open("w") as err:
                pids.append(subprocess.Popen(command, env={**env, "JAX_PROCESS_ID": str(i)}, cwd=tree,
                                             stdout=subprocess.DEVNULL, stderr=err).pid)
        rss_mib = 0.0
        for pid, log in zip(pids, logs):
            # wait4, not Popen.wait: it gives this child's own peak resident memory (KiB on Linux)
            _, status, usage = os.wait4(pid, 0)
            if os.waitstatus_to_exitcode(status):
                raise RuntimeError(f"exit {os.waitstatus_to_exitcode(status)}: {log.read_text()[-2000:]}")
            rss_mib = max(rss_mib, usage.ru_maxrss / 1024)
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return {**{key: summary[key] for key in ("sps", "compile_s", "xla_flags")}, "max_rss_mib": rss_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--algo", choices=("ppo", "sac"), default="ppo")
    parser.add_argument("--seeds", type=int, default=1, help="vmapped seeds; steps/s counts them all")
    parser.add_argument("--steps", type=int, help="env steps per seed (default: ppo 491,520, a multiple of 4096; sac 11,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="processes joined by jax.distributed per run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for both sides")
    args = parser.parse_args()
    steps = args.steps or {"ppo": 491_520, "sac": 11_000}[args.algo]
    command = [*overrides(args.algo, steps, args.seeds), *args.set]
    rates: dict[str, list[float]] = {"before": [], "after": []}
    memory: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(args.rounds):
        for side in ("before", "after"):
            result = run(getattr(args, side), command, args.processes)
            rates[side].append(result["sps"])
            memory[side].append(result["max_rss_mib"])
            print(
                f"round {i + 1} {side:6s} {result['sps']:>9,.0f} steps/s  compile {result['compile_s']:.1f} s  "
                f"max RSS {result['max_rss_mib']:,.0f} MiB  XLA_FLAGS={result['xla_flags']!r}",
                flush=True,
            )
    before, after = statistics.median(rates["before"]), statistics.median(rates["after"])
    print(json.dumps({"before_sps": round(before), "after_sps": round(after), "after_over_before": round(after / before, 3),
                      "before_max_rss_mib": round(statistics.median(memory["before"])),
                      "after_max_rss_mib": round(statistics.median(memory["after"]))}))


if __name__ == "__main__":
    main()
