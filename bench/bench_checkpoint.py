"""What checkpoints cost: the time to write one, its size, and the loop's
throughput with checkpoints off, at the default cadence, and after every chunk.

    python bench/bench_checkpoint.py [--repeats 3]

Part 1 writes and reads real population states (the default PPO job's, and
SAC's with its replay buffer) and reports medians. Part 2 runs the default
PPO job (`python -m jaxrl.train`, logger=none, no video) alternating the three
cadences, and reports the median loop time (wall time minus compilation)
of each relative to checkpoints off.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import jax

import jaxrl  # noqa: F401  (the CPU deadlock guard, before jax starts)
from jaxrl.checkpoint import Checkpointer, Position
from jaxrl.config import CheckpointConfig, from_dict
from jaxrl.runner import build, member_keys, population_hyperparams, train
from jaxrl.train import compose_config
from omegaconf import OmegaConf

STATES = {
    "ppo, 2 seeds (default job)": [],
    "sac_mountaincar, 2 seeds (replay buffer)": ["experiment=sac_mountaincar"],
}
CADENCES = {
    "off": ["checkpoint.enabled=false"],
    "default (every 300 s + end)": [],
    "every chunk (20 saves)": ["checkpoint.every=1"],
}


def config(overrides: list[str]) -> tuple[dict, object]:
    resolved = OmegaConf.to_container(compose_config(["logger=none", "video.enabled=false", *overrides]), resolve=True)
    return resolved, from_dict(resolved)


def write_and_read(overrides: list[str], repeats: int) -> str:
    _, run = config(overrides)
    algo, _ = build(run)
    keys = member_keys(run)
    states = jax.jit(jax.vmap(algo.init))(keys, population_hyperparams(run))
    shapes = jax.eval_shape(lambda: states)
    saves, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Checkpointer(Path(tmp), CheckpointConfig(keep=2))
        for i in range(repeats):
            start = time.perf_counter()
            path = ckpt.save(states, keys, Position(i + 1, 1, i + 1, 0.0, 0.0, {}))
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            ckpt.restore(shapes, keys.shape[0])
            loads.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        ckpt.close()
    state_mb = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(states)) / 2**20
    return (f"state {state_mb:.1f} MiB, on disk {size / 2**20:.2f} MiB, save {statistics.median(saves) * 1e3:.0f} ms, "
            f"restore {statistics.median(loads) * 1e3:.0f} ms (medians of {repeats})")


def loop_seconds(overrides: list[str]) -> float:
    resolved, run = config(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        from jaxrl.sinks import make_sinks

        run = dataclasses.replace(run, run_dir=str(Path(tmp) / "run"))
        summary = train(run, Path(run.run_dir), make_sinks(run)[1:], resolved)
    return summary["wall_s"] - summary["compile_s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    for name, overrides in STATES.items():
        print(f"{name}: {write_and_read(overrides, 5)}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in CADENCES}
    for _ in range(args.repeats):
        for name, overrides in CADENCES.items():
            times[name].append(loop_seconds(overrides))
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    base = statistics.median(times["off"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"default PPO job, checkpoints {name}: loop {median:.2f} s (median of {len(values)}), "
              f"{base / median:.3f}x the throughput with checkpoints off")


if __name__ == "__main__":
    main()
