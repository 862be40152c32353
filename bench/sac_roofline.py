"""How close one SAC iteration at the paper's settings is to this machine's arithmetic limit.

Prints, medians of --repeats timings in one process:
  - the FLOPs of one `update` (1 env step, 1 gradient step, batch 256, 2x256
    relu; XLA's own cost analysis of the compiled update, whose loops all run
    once at these settings, so the count is exact);
  - its time per iteration inside a jitted scan of --iterations updates, and
    the GFLOP/s that makes;
  - the GFLOP/s of a chain of 256x256 @ 256x256 matmuls, the shape SAC's
    layers have, as the machine's rate for them.
An iteration that runs near the matmul rate has no overhead left to remove:
only fewer FLOPs (or faster matmuls) make it faster.

    python bench/sac_roofline.py [--iterations 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jaxrl  # noqa: F401  (installs the CPU guard before jax starts)
import jax
import jax.numpy as jnp

from jaxrl.algos.base import hyperparams
from jaxrl.config import from_dict
from jaxrl.runner import build


def timed(fn, arg, repeats: int) -> float:
    """Median seconds of `fn(arg)` (compiled, warmed up) over `repeats` calls."""
    jax.block_until_ready(fn(arg))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run = from_dict({
        "algo": {"name": "sac", "warmup_steps": 0},
        "env": {"suite": "gymnax", "name": "MountainCarContinuous-v0", "id": "mountaincar_continuous"},
        "total_timesteps": 100_000, "video": {"enabled": False}, "logger": {"backend": "none"},
    })
    algo, _ = build(run)
    state = algo.init(jax.random.PRNGKey(0), hyperparams(run.algo))
    cost = jax.jit(lambda s: algo.update(s)[0]).lower(state).compile().cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
    n = args.iterations
    scan = jax.jit(lambda s: jax.lax.scan(lambda c, _: (algo.update(c)[0], None), s, None, length=n)[0])
    per_iter = timed(scan, state, args.repeats) / n

    x, w = jnp.ones((256, 256)), jnp.full((256, 256), 1e-3)
    matmuls = 200
    chain = jax.jit(lambda a: jax.lax.fori_loop(0, matmuls, lambda _, y: y @ w, a))
    per_matmul = timed(chain, x, args.repeats) / matmuls

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"SAC update: {flops / 1e6:.0f} MFLOP, {per_iter * 1e3:.2f} ms per iteration "
          f"({1 / per_iter:.0f} env steps/s), {flops / per_iter / 1e9:.0f} GFLOP/s")
    print(f"256x256 @ 256x256 matmul: {per_matmul * 1e6:.0f} us, {2 * 256**3 / per_matmul / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
