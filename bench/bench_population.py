"""Population throughput: PPO on MountainCarContinuous with 1, 8, 64 and 256
vmapped members in one compiled program (issue 11's benchmark); with
--experiment NAME, any preset instead (sac_mountaincar, humanoid_ppo, ...).

For each population size P, the runner's own chunk program (`compile_programs`,
sharded over the local devices as a run would be) is compiled once and timed
over --chunks chunks after one warm-up chunk. Reported per P:
  - compile s;
  - total env steps/s, all members together;
  - seconds per agent: wall time of the timed chunks divided by P;
  - speedup: total steps/s over the steps/s of one member (the issue's goal
    on a GPU: 256 members at >= 50x).
Each figure is the median of --repeats timings. Evaluation is not timed.
Every size runs with the XLA flags the CLI would choose for the largest
(`jaxrl.host.relax_cpu_guard`: on the CPU, the guard from 2 members on), so
that sizes compare like with like.
With --profile DIR, one more chunk of each population runs under jax.profiler;
its Perfetto trace is kept as DIR/trace_<P>.json.gz and the operations that
took the most device time are printed (where the time goes, and why the
speed-up stops growing).

    python bench/bench_population.py [--members 1,8,64,256] [--updates 8] [--chunks 3] [--repeats 3] [--json out.json] [--profile DIR]
    python bench/bench_population.py --experiment sac_mountaincar --updates 4096 --chunks 2
    python bench/bench_population.py --tiny --members 1,2   # a check that it runs, in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jaxrl  # noqa: F401  (installs the CPU guard before jax starts)
import jax

from jaxrl.config import from_dict
from jaxrl.host import relax_cpu_guard
from jaxrl.runner import Schedule, build, compile_programs, member_keys, population_hyperparams
from op_times import op_times, record

# The configuration of bench_ppo.py (the core issue's benchmark shape).
SHAPE = {
    "num_envs": 16, "rollout_length": 256, "num_epochs": 4, "num_minibatches": 32,
    "hidden": [256, 256], "activation": "tanh", "normalize_obs": True, "normalize_reward": True,
}
TINY = {**SHAPE, "num_envs": 4, "rollout_length": 8, "num_minibatches": 4, "num_epochs": 1, "hidden": [16]}
QUIET = {"video": {"enabled": False}, "logger": {"backend": "none"}}


def ppo_settings(shape: dict) -> dict:
    """The run settings of PPO at `shape` on MountainCarContinuous (all but the population and budget)."""
    env = {"suite": "gymnax", "name": "MountainCarContinuous-v0", "id": "mountaincar_continuous"}
    return {"algo": {"name": "ppo", **shape}, "env": env, **QUIET}


def preset_settings(experiment: str) -> dict:
    """The run settings of `experiment=<name>` as the command line composes them."""
    from omegaconf import OmegaConf

    from jaxrl.train import compose_config

    return {**OmegaConf.to_container(compose_config([f"experiment={experiment}"]), resolve=True), **QUIET}


def measure(members: int, settings: dict, updates: int, chunks: int, repeats: int, profile: Path | None = None) -> dict:
    """Compile s, total env steps/s and seconds per agent for a population of `members` of the run
    settings `settings`; with `profile`, also the trace of one more chunk (see `trace_chunk`)."""
    steps_per_update = settings["algo"]["num_envs"] * settings["algo"]["rollout_length"]
    run = from_dict({
        **settings, "seeds": members, "seed": 0, "sweep": {},
        "total_timesteps": (chunks + 1) * updates * steps_per_update, "num_logs": chunks + 1,
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
    if profile is not None:
        trace_chunk(programs, states, profile / f"trace_{members}.json.gz")
    wall = statistics.median(timings)
    steps = members * chunks * updates * algo.steps_per_update
    return {"members": members, "compile_s": round(programs.seconds, 2), "sps": round(steps / wall, 1),
            "s_per_agent": round(wall / members, 4)}


def trace_chunk(programs, states, out: Path, top: int = 12) -> None:
    """Run one chunk under jax.profiler, keep its Perfetto trace at `out`, and print
    the `top` operations by total time on the accelerator (a CPU trace is only kept)."""
    events = record(lambda: jax.block_until_ready(programs.chunk(states)), keep=out)
    totals, counts, on_device = op_times(events)
    if not on_device:
        print(f"  trace of one chunk -> {out} (no accelerator in it: open it in ui.perfetto.dev)")
        return
    busy = sum(totals.values())
    print(f"  trace of one chunk -> {out}: {busy / 1e3:,.1f} ms busy on the device in {sum(counts.values()):,} operations")
    for name, dur in totals.most_common(top):
        print(f"    {dur / busy:6.1%} {dur / 1e3:9.1f} ms {counts[name]:7,} x  {name[:90]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="1,8,64,256", help="comma-separated population sizes")
    parser.add_argument("--updates", type=int, default=8, help="updates per chunk (off-policy: one per env step of all envs)")
    parser.add_argument("--chunks", type=int, default=3, help="timed chunks per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--experiment", help="a preset (configs/experiment/<name>.yaml) instead of PPO at the make bench shape")
    parser.add_argument("--tiny", action="store_true", help="a tiny network and rollout: checks that the script runs")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--profile", type=Path, help="trace one more chunk of each population into this folder")
    args = parser.parse_args()
    settings = preset_settings(args.experiment) if args.experiment else ppo_settings(TINY if args.tiny else SHAPE)
    sizes = [int(p) for p in args.members.split(",")]
    # before jax starts: the XLA flags `python -m jaxrl.train` would choose for the
    # largest population (README, Architecture), the same for every size so that they compare
    relax_cpu_guard([(settings["env"]["suite"], settings["env"].get("backend"))], max(sizes))
    print(f"jax {jax.__version__} on {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({platform.processor() or platform.machine()}), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print("| members | compile s | total env steps/s | s per agent | speedup over 1 member |")
    print("|---|---|---|---|---|", flush=True)
    rows, base = [], None
    for p in sizes:
        # printed as measured: a run cut short by a time limit still shows its rows
        r = measure(p, settings, args.updates, args.chunks, args.repeats, args.profile)
        base = r["sps"] / r["members"] if r["members"] == 1 else base
        r["speedup"] = round(r["sps"] / base, 2) if base else None
        rows.append(r)
        print(f"| {r['members']} | {r['compile_s']} | {r['sps']:,.0f} | {r['s_per_agent']} | {r['speedup'] or '-'} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jax": jax.__version__, "devices": [str(d) for d in jax.devices()], "experiment": args.experiment,
                       "xla_flags": os.environ.get("XLA_FLAGS", ""), "algo": settings["algo"], "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
