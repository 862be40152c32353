"""How long building a Brax env takes: Brax's own `observation_size` (an eager
`reset`) against the shape from `jax.eval_shape` (what jaxrl's adapter reads).

Each measurement runs in a fresh process, since the cost is the first eager
dispatch of each op in a process; old and new alternate.

    python bench/brax_env_build.py [--env humanoid] [--backend positional] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CHILD = """
import sys, time
import jax, brax.envs
env = brax.envs.get_environment(sys.argv[2], backend=sys.argv[3])
start = time.perf_counter()
if sys.argv[1] == "eager":
    size = env.observation_size
else:
    size = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1]
print(time.perf_counter() - start, size)
"""


def main() -> None:
    """Prints each fresh process's seconds and the medians, eager reset against eval_shape."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="humanoid")
    parser.add_argument("--backend", default="positional")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"eager": [], "eval_shape": []}
    for _ in range(args.rounds):
        for way in times:
            out = subprocess.run(
                [sys.executable, "-W", "ignore", "-c", CHILD, way, args.env, args.backend],
                capture_output=True, text=True, check=True,
            ).stdout.split()
            times[way].append(float(out[0]))
            print(f"{way:>10}: {float(out[0]):.2f} s (observation size {out[1]})", flush=True)
    eager, shaped = statistics.median(times["eager"]), statistics.median(times["eval_shape"])
    print(f"medians: eager reset {eager:.2f} s, eval_shape {shaped:.2f} s ({eager / shaped:.1f}x)")


if __name__ == "__main__":
    main()
