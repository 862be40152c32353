"""Population throughput: PPO on MountainCarContinuous with 1, 8, 64 and 256
vmapped members in one compiled program (issue 11's benchmark).

For each population size P, the runner's own chunk program (`compile_programs`,
sharded over the local devices as a run would be) is compiled once and timed
over --chunks chunks after one warm-up chunk. Reported per P:
  - compile s;
  - total env steps/s, all members together;
  - seconds per agent: wall time of the timed chunks divided by P;
  - speedup: total steps/s over the steps/s of one member (the issue's goal
    on a GPU: 256 members at >= 50x).
Each figure is the median of --repeats timings. Evaluation is not timed.

    python bench/bench_population.py [--members 1,8,64,256] [--updates 8] [--chunks 3] [--repeats 3] [--json out.json]
    python bench/bench_population.py --tiny --members 1,2   # a check that it runs, in seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jaxrl  # noqa: F401  (installs the CPU guard before jax starts)
import jax

from jaxrl.config import from_dict
from jaxrl.runner import Schedule, build, compile_programs, member_keys, population_hyperparams

# The configuration of bench_ppo.py (the core issue's benchmark shape).
SHAPE = {
    "num_envs": 16, "rollout_length": 256, "num_epochs": 4, "num_minibatches": 32,
    "hidden": [256, 256], "activation": "tanh", "normalize_obs": True, "normalize_reward": True,
}
TINY = {**SHAPE, "num_envs": 4, "rollout_length": 8, "num_minibatches": 4, "num_epochs": 1, "hidden": [16]}


def measure(members: int, shape: dict, updates: int, chunks: int, repeats: int) -> dict:
    """Compile s, total env steps/s and seconds per agent for a population of `members`."""
    run = from_dict({
        "algo": {"name": "ppo", **shape},
        "env": {"suite": "gymnax", "name": "MountainCarContinuous-v0", "id": "mountaincar_continuous"},
        "seeds": members, "total_timesteps": (chunks + 1) * updates * shape["num_envs"] * shape["rollout_length"],
        "num_logs": chunks + 1, "video": {"enabled": False}, "logger": {"backend": "none"},
    })
    algo, _ = build(run)
    schedule = Schedule(num_chunks=chunks + 1, updates_per_chunk=updates, steps_per_update=algo.steps_per_update)
    keys, hp = member_keys(run), population_hyperparams(run)
    programs = compile_programs(algo, schedule, keys, hp, eval_episodes=1)
    timings = []
    for _ in range(repeats):
        states, _ = programs.chunk(programs.init(keys, hp))  # warm-up chunk: first-call costs
        jax.block_until_ready(states)
        start = time.perf_counter()
        for _ in range(chunks):
            states, metrics = programs.chunk(states)
        jax.block_until_ready((states, metrics))
        timings.append(time.perf_counter() - start)
    wall = statistics.median(timings)
    steps = members * chunks * updates * algo.steps_per_update
    return {"members": members, "compile_s": round(programs.seconds, 2), "sps": round(steps / wall, 1),
            "s_per_agent": round(wall / members, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="1,8,64,256", help="comma-separated population sizes")
    parser.add_argument("--updates", type=int, default=8, help="PPO updates per chunk")
    parser.add_argument("--chunks", type=int, default=3, help="timed chunks per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a tiny network and rollout: checks that the script runs")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    shape = TINY if args.tiny else SHAPE
    print(f"jax {jax.__version__} on {jax.device_count()} x {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()})")
    print("| members | compile s | total env steps/s | s per agent | speedup over 1 member |")
    print("|---|---|---|---|---|", flush=True)
    rows, base = [], None
    for p in args.members.split(","):
        # printed as measured: a run cut short by a time limit still shows its rows
        r = measure(int(p), shape, args.updates, args.chunks, args.repeats)
        base = r["sps"] / r["members"] if r["members"] == 1 else base
        r["speedup"] = round(r["sps"] / base, 2) if base else None
        rows.append(r)
        print(f"| {r['members']} | {r['compile_s']} | {r['sps']:,.0f} | {r['s_per_agent']} | {r['speedup'] or '-'} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jax": jax.__version__, "devices": [str(d) for d in jax.devices()], "shape": shape, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
