"""Where one update's time goes, for any `python -m jaxrl.train` command line.

Times, for the config the CLI would run (one member, with the XLA flags the
CLI would choose; off-policy algorithms from the end of their random warm-up):
  - update:  jit(scan(algo.update)), ms per update;
  - collect: jit(scan(algo.collect)) and learn: jit(scan(algo.learn)) on one
    fixed rollout, for the on-policy algorithms (PPO, A2C, TRPO);
each program, like the runner's chunk, takes the state the last call returned
(donated) and returns its last outputs, so nothing it computes is dropped;
then records one jax.profiler trace of 4 updates and prints their ops
grouped by how often they run per update (a minibatch step of PPO's humanoid
settings runs 64 times per update, a physics substep 100 times), the costliest
first (`op_times`: the device's operations on an accelerator; on the CPU they
are summed over XLA's threads, so they add up to more than the wall time when
ops run side by side). Medians of --repeats.

    python bench/where_time_goes.py experiment=humanoid_ppo env.backend=spring \\
        algo.num_envs=128 algo.rollout_length=10 algo.num_minibatches=8 [--updates 20] [--top 12]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time

import jaxrl  # noqa: F401  (installs the CPU guard before jax starts)
from jaxrl.host import relax_cpu_guard
from jaxrl.train import compose_config
from op_times import op_times, record


def timed(program, state, updates: int, repeats: int):
    """Median ms per update of `program`, compiled and warmed first, and the
    state it leaves. Each call takes the state the last one returned, donated,
    as the runner's chunks do: re-running one state, undonated, timed PPO's
    `make bench` update at 104 ms instead of the runner's 68."""
    import jax

    state = jax.block_until_ready(program(state))[0]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(program(state))[0]
        times.append(1000 * (time.perf_counter() - start) / updates)
    return statistics.median(times), state


def op_table(program, state, updates: int, top: int) -> list[str]:
    """One profiler trace of `program(state)`: per-update op time, grouped by how often an op runs per update."""
    import jax

    state = jax.block_until_ready(program(state))[0]  # compiled outside the trace
    total, count, _ = op_times(record(lambda: jax.block_until_ready(program(state))))
    groups: dict[int, list[str]] = collections.defaultdict(list)
    for name, n in count.items():
        groups[n // updates].append(name)
    lines = []
    for per_update, names in sorted(groups.items(), key=lambda g: -sum(total[n] for n in g[1])):
        ms = sum(total[n] for n in names) / 1000 / updates
        if ms < 0.05:
            continue
        costly = sorted(names, key=lambda n: -total[n])[:top]
        lines.append(f"{per_update:5d}x per update: {ms:8.2f} ms in {len(names)} ops; costliest: "
                     + ", ".join(f"{n} {total[n] / count[n]:.0f}us" for n in costly))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="the CLI's overrides (seeds is forced to 1)")
    parser.add_argument("--updates", type=int, default=20, help="updates per timed program")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=6, help="ops named per group")
    args = parser.parse_args()

    from omegaconf import OmegaConf

    cfg = compose_config([*args.overrides, "seeds=1"])
    relax_cpu_guard([(cfg.env.suite, cfg.env.backend)], members=1)
    import jax

    from jaxrl.algos.base import hyperparams
    from jaxrl.algos.onpolicy import OnPolicy
    from jaxrl.config import from_dict
    from jaxrl.runner import build

    run = from_dict(OmegaConf.to_container(cfg, resolve=True))
    algo, _ = build(run)
    state = jax.jit(algo.init)(jax.random.PRNGKey(run.seed), hyperparams(run.algo))
    n = args.updates
    # off-policy algorithms: time updates that learn, past the random warm-up
    warmup = -(-getattr(run.algo, "warmup_steps", 0) // algo.steps_per_update)
    if warmup:
        state = jax.jit(lambda s: jax.lax.scan(lambda c, _: (algo.update(c)[0], None), s, None, length=warmup)[0])(state)

    def scanned(step, length=n):
        # `step(state) -> (state, outputs)`; the last outputs are returned, so
        # that XLA cannot drop the work that makes them (collect's GAE and critic)
        def program(s):
            s, outputs = jax.lax.scan(lambda c, _: step(c), s, None, length=length)
            return s, jax.tree.map(lambda y: y[-1], outputs)

        return jax.jit(program, donate_argnums=0)

    print(f"{jax.devices()[0].device_kind}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    ms, state = timed(scanned(algo.update), state, n, args.repeats)
    print(f"update:  {ms:8.2f} ms")
    if isinstance(algo, OnPolicy):
        key = jax.random.PRNGKey(1)

        def collect(s):
            s, batch, metrics = algo.collect(s, key)
            return s, (batch, metrics)

        def learn(state_and_batch):
            # the batch rides along in the carry: every update learns from the same rollout
            s, batch = state_and_batch
            s, metrics = algo.learn(s, batch, key)
            return (s, batch), metrics

        _, batch, _ = jax.jit(algo.collect)(state, key)
        ms, state = timed(scanned(collect), state, n, args.repeats)
        print(f"collect: {ms:8.2f} ms")
        ms, (state, _) = timed(scanned(learn), (state, batch), n, args.repeats)
        print(f"learn:   {ms:8.2f} ms")
    # a short program for the trace: the profiler drops events past its buffer
    traced = min(n, 4)
    print("\n".join(op_table(scanned(algo.update, traced), state, traced, args.top)))


if __name__ == "__main__":
    main()
