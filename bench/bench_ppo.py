"""PPO throughput on MountainCarContinuous: the runner against a bare jitted program.

Measures, in one process so ratios compare like with like on a noisy machine:
  - bare:      one hand-written jit(scan(update)) of the same PPO, single seed;
  - runner:    `jaxrl.runner.train` (chunks, metrics to metrics.jsonl), single seed;
  - runner x8: the same with 8 vmapped seeds (total steps/s);
  - wandb:     the runner with the wandb sink (offline) added;
  - random:    a random-policy rollout of the env, 16 envs;
and the compile time. Each figure is the median of --repeats runs, under the
XLA flags `python -m jaxrl.train` chooses: one seed without the CPU guard, 8
seeds with it (`jaxrl.host.relax_cpu_guard`), so the 8-seed figure runs in a
child process of its own.

    python bench/bench_ppo.py [--steps 983040] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jaxrl  # noqa: F401  (installs the CPU guard before jax starts)
import jax

from jaxrl.algos.base import hyperparams
from jaxrl.config import from_dict
from jaxrl.host import relax_cpu_guard
from jaxrl.runner import build, train
from jaxrl.sinks.jsonl import JsonlSink

# The configuration the issue fixes for this benchmark.
SHAPE = {
    "num_envs": 16, "rollout_length": 256, "num_epochs": 4, "num_minibatches": 32,
    "hidden": [256, 256], "activation": "tanh", "normalize_obs": True, "normalize_reward": True,
}


def run_config(steps: int, seeds: int, logger: str = "none") -> dict:
    return {
        "algo": {"name": "ppo", **SHAPE},
        "env": {"suite": "gymnax", "name": "MountainCarContinuous-v0", "id": "mountaincar_continuous"},
        "seeds": seeds, "total_timesteps": steps, "num_logs": 20,
        "eval": {"every": 1000, "episodes": 4}, "video": {"enabled": False},
        "logger": {"backend": logger, "mode": "offline"},
    }


def bare(steps: int, repeats: int) -> tuple[float, float]:
    """(steps/s, compile s) of a single jitted scan over all updates, one seed."""
    run = from_dict(run_config(steps, 1))
    algo, schedule = build(run)
    updates = schedule.num_chunks * schedule.updates_per_chunk
    program = jax.jit(lambda s: jax.lax.scan(lambda c, _: algo.update(c), s, None, length=updates)[0])
    state = algo.init(jax.random.PRNGKey(0), hyperparams(run.algo))
    start = time.perf_counter()
    compiled = program.lower(state).compile()
    compile_s = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(state))
        rates.append(schedule.total_steps / (time.perf_counter() - start))
    return statistics.median(rates), compile_s


def through_runner(steps: int, seeds: int, repeats: int, logger: str = "none") -> tuple[float, float]:
    """(median total steps/s excluding compilation, median compile s) of `train`."""
    rates, compiles = [], []
    for _ in range(repeats):
        raw = run_config(steps, seeds, logger)
        run = from_dict(raw)
        with tempfile.TemporaryDirectory() as tmp:
            sinks = [JsonlSink()]
            if logger == "wandb":
                from jaxrl.sinks.wandb_sink import WandbSink

                sinks.append(WandbSink(mode="offline"))
            summary = train(run, Path(tmp) / "run", sinks, raw)
        rates.append(summary["sps"])
        compiles.append(summary["compile_s"])
    return statistics.median(rates), statistics.median(compiles)


def random_rollout(repeats: int, num_envs: int = 16, length: int = 100_000) -> float:
    """Env steps/s of a random-policy, jitted, vmapped scan rollout."""
    from jaxrl.envs import make_env

    env = make_env("gymnax", "MountainCarContinuous-v0")

    @jax.jit
    def rollout(key):
        state, _ = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def step(state, key):
            k_act, k_env = jax.random.split(key)
            action = jax.random.uniform(k_act, (num_envs, 1), minval=-1.0, maxval=1.0)
            state, ts = jax.vmap(env.step)(jax.random.split(k_env, num_envs), state, action)
            return state, ts.reward.sum()

        return jax.lax.scan(step, state, jax.random.split(key, length))[1].sum()

    jax.block_until_ready(rollout(jax.random.PRNGKey(0)))
    rates = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(rollout(jax.random.PRNGKey(i + 1)))
        rates.append(num_envs * length / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=983_040, help="env steps per seed (a multiple of 4096)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seeds8-only", action="store_true", help="print only the 8-seed figure (how this script gets it)")
    args = parser.parse_args()
    # 8 seeds of a quarter of the steps each: twice the work of one seed
    seeds8_steps = max(4096, args.steps // 4 // 4096 * 4096)
    if args.seeds8_only:
        # the CLI keeps the guard `import jaxrl` set for a population
        print(json.dumps({"sps": through_runner(seeds8_steps, 8, args.repeats)[0], "xla_flags": os.environ.get("XLA_FLAGS", "")}))
        return
    relax_cpu_guard([("gymnax", None)], members=1)

    bare_sps, bare_compile = bare(args.steps, args.repeats)
    runner_sps, runner_compile = through_runner(args.steps, 1, args.repeats)
    child = [sys.executable, __file__, "--steps", str(args.steps), "--repeats", str(args.repeats), "--seeds8-only"]
    seeds8 = json.loads(subprocess.run(child, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    seeds8_sps = seeds8["sps"]
    wandb_sps, _ = through_runner(args.steps, 1, args.repeats, logger="wandb")
    random_sps = random_rollout(args.repeats)
    results = {
        "machine": f"{platform.node()} {platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}",
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "steps_per_seed": args.steps,
        "repeats": args.repeats,
        "xla_flags_one_seed": os.environ.get("XLA_FLAGS", ""),
        "xla_flags_8_seeds": seeds8["xla_flags"],
        "bare_sps": round(bare_sps),
        "bare_compile_s": round(bare_compile, 2),
        "runner_sps": round(runner_sps),
        "runner_compile_s": round(runner_compile, 2),
        "runner_over_bare": round(runner_sps / bare_sps, 3),
        "seeds8_total_sps": round(seeds8_sps),
        "seeds8_over_single": round(seeds8_sps / runner_sps, 3),
        "wandb_sps": round(wandb_sps),
        "wandb_over_none": round(wandb_sps / runner_sps, 3),
        "random_rollout_sps": round(random_sps),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
