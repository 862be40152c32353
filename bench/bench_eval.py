"""Seconds per deterministic evaluation, the runner's own `evaluate` program, for any
`python -m jaxrl.train` command line's config, on its freshly initialised (untrained) policy.

    python bench/bench_eval.py experiment=humanoid_cpu [--repeats 5]

Prints the median over --repeats calls (after the compilation) and the episodes' mean length:
an evaluation steps its `eval.episodes` envs side by side until the last episode has ended.
Run it with PYTHONPATH set to another checkout to time that checkout's evaluation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jaxrl  # noqa: F401  (installs the CPU guard before jax starts)
import jax
from omegaconf import OmegaConf

from jaxrl.config import from_dict
from jaxrl.runner import build, compile_programs, member_keys, population_hyperparams
from jaxrl.train import compose_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="the command line's key=value overrides")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    run = from_dict(OmegaConf.to_container(compose_config(args.overrides), resolve=True))
    algo, schedule = build(run)
    keys, hp = member_keys(run), population_hyperparams(run)
    programs = compile_programs(algo, schedule, keys, hp, run.eval.episodes)
    states = programs.init(keys, hp)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        results = jax.device_get(programs.evaluate(states, keys))
        seconds.append(time.perf_counter() - start)
    print(
        f"{' '.join(args.overrides) or '(defaults)'}: {statistics.median(seconds):.3f} s per evaluation "
        f"(median of {args.repeats}; {run.eval.episodes} episodes, mean length "
        f"{float(results['eval/length_mean'].mean()):.1f} of {algo.env.spec.max_episode_steps})"
    )


if __name__ == "__main__":
    main()
