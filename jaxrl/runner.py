"""The host loop: jitted chunks of `scan(vmap(update))`, side effects between them.

The population (sweep members x seeds) is one leading axis of every leaf of
the training state. Each chunk runs `updates_per_chunk` updates of every member
in one compiled call; logging, evaluation and file writes happen only between
chunks, on the host.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import psutil
import yaml

from jaxrl.algos import ALGORITHMS
from jaxrl.algos.base import Algorithm, hyperparams
from jaxrl.config import ConfigError, RunConfig
from jaxrl.envs import make_env
from jaxrl.evaluation import evaluate
from jaxrl.sinks.base import RunInfo, Sink

POLICY_FILE = "policy.msgpack"
SUMMED = ("episode/return_sum", "episode/length_sum", "episode/count")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run's updates are cut into chunks (all counts per member)."""

    num_chunks: int
    updates_per_chunk: int
    steps_per_update: int

    @property
    def total_steps(self) -> int:
        """Env steps per member over the whole run."""
        return self.num_chunks * self.updates_per_chunk * self.steps_per_update


def build(run: RunConfig) -> tuple[Algorithm, Schedule]:
    """The env, the algorithm and the chunk schedule for a run.

    The update count is rounded up to whole updates and chunks (at most
    `num_logs` of them), and the algorithm is told the rounded budget so
    schedules such as lr annealing end exactly at the last update.
    """
    env = make_env(run.env.suite, run.env.name, run.env.backend, run.env.episode_length)
    algo_cls = ALGORITHMS[run.algo_name]
    algo = algo_cls(env, run.algo, run.total_timesteps)
    num_updates = math.ceil(run.total_timesteps / algo.steps_per_update)
    per_chunk = math.ceil(num_updates / min(run.num_logs, num_updates))
    schedule = Schedule(math.ceil(num_updates / per_chunk), per_chunk, algo.steps_per_update)
    if schedule.total_steps != run.total_timesteps:
        algo = algo_cls(env, run.algo, schedule.total_steps)
    return algo, schedule


def population_hyperparams(run: RunConfig) -> dict[str, jax.Array]:
    """Traced hyperparameters with a leading [P] member axis (sweep values applied)."""
    members = run.members()
    base = hyperparams(run.algo)
    return {
        name: jnp.asarray([m.get(f"algo.{name}", float(value)) for m in members], jnp.float32)
        for name, value in base.items()
    }


def member_keys(run: RunConfig) -> jax.Array:
    """One PRNG key per member, from its seed alone, so a seed trains the same
    whether it runs alone or inside a population."""
    return jax.vmap(jax.random.PRNGKey)(jnp.asarray([m["seed"] for m in run.members()], jnp.uint32))


def check_memory(shapes: Any, num_members: int) -> None:
    """Raises ConfigError when a population's training state alone, given as
    its shapes (ShapeDtypeStructs), cannot fit in the device's memory (the
    host's free RAM on a CPU). Replay buffers dominate it for the off-policy
    algorithms.
    """
    needed = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
    stats = jax.devices()[0].memory_stats() or {}
    available = stats.get("bytes_limit") or psutil.virtual_memory().available
    if needed > 0.8 * available:
        raise ConfigError(
            f"the training state of {num_members} member(s) needs {needed / 2**30:.1f} GiB, more than the "
            f"{available / 2**30:.1f} GiB this device has free; lower seeds, the sweep, algo.num_envs or "
            f"(off-policy) algo.buffer_size"
        )


def reduce_chunk(metrics: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Per-member rows from a chunk's metrics ([updates, P] each).

    Episode sums become true means over the episodes that finished in the
    chunk (absent when none did); everything else is averaged over updates.
    """
    count = metrics["episode/count"].sum(0)
    rows = []
    for i in range(count.shape[0]):
        row = {k: float(v[:, i].mean()) for k, v in metrics.items() if k not in SUMMED}
        if count[i] > 0:
            row["train/episode_return"] = float(metrics["episode/return_sum"][:, i].sum() / count[i])
            row["train/episode_length"] = float(metrics["episode/length_sum"][:, i].sum() / count[i])
        rows.append(row)
    return rows


def train(run: RunConfig, run_dir: Path, sinks: list[Sink], resolved_config: dict[str, Any]) -> dict[str, Any]:
    """Trains the population, feeding `sinks`; returns the summary.

    The env and algorithm are built first, so a bad env name fails before
    anything is written or compiled; then `run_dir` is made and receives
    config.yaml, metrics.jsonl (through the sinks), the policy, summary.json,
    videos/ and curves.png.
    """
    start = time.perf_counter()
    algo, schedule = build(run)
    members = run.members()
    compile_start = time.perf_counter()
    init_keys, eval_keys = jax.vmap(jax.random.split, out_axes=1)(member_keys(run))
    hp = population_hyperparams(run)
    # lowering traces init without running it: its output shapes size the state
    init_fn = jax.jit(jax.vmap(algo.init)).lower(init_keys, hp)
    check_memory(init_fn.out_info, len(members))
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run_dir {run_dir} already holds files; give a new or empty folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved_config, sort_keys=False))
    info = RunInfo(run_dir, run_dir.name, run.algo_name, run.env.id, resolved_config, members, schedule.total_steps)

    def population_update(states):
        if len(members) == 1:
            # vmap over a population of one turns every matmul into a batched
            # one, which XLA:CPU ran about 25% slower (bench/bench_ppo.py); a
            # lone member is updated unbatched instead.
            state, metrics = algo.update(jax.tree.map(lambda x: x[0], states))
            return jax.tree.map(lambda x: x[None], (state, metrics))
        return jax.vmap(algo.update)(states)

    def chunk(states):
        return jax.lax.scan(lambda s, _: population_update(s), states, None, length=schedule.updates_per_chunk)

    def evaluate_member(state, key):
        params = algo.policy_params(state)
        return evaluate(algo.env, lambda obs, k: algo.policy(params, obs, k, True), key, run.eval.episodes)

    states = init_fn.compile()(init_keys, hp)
    chunk_fn = jax.jit(chunk, donate_argnums=0).lower(states).compile()
    eval_fn = jax.jit(jax.vmap(evaluate_member)).lower(states, eval_keys).compile()
    compile_s = time.perf_counter() - compile_start

    final: dict[str, list[float]] = {}
    summary: dict[str, Any] = {}
    train_s = 0.0
    try:
        for sink in sinks:
            sink.open(info)
        for index in range(schedule.num_chunks):
            chunk_start = time.perf_counter()
            states, metrics = chunk_fn(states)
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - chunk_start
            train_s += elapsed
            rows = reduce_chunk(metrics)
            sps = schedule.updates_per_chunk * schedule.steps_per_update / elapsed
            last = index == schedule.num_chunks - 1
            if last or (index + 1) % run.eval.every == 0:
                eval_keys = jax.vmap(jax.random.fold_in)(eval_keys, jnp.full(len(members), index, jnp.uint32))
                result = jax.device_get(eval_fn(states, eval_keys))
                final = {k: [float(x) for x in v] for k, v in result.items()}
                for i, row in enumerate(rows):
                    row.update({k: v[i] for k, v in final.items()})
                # the latest evaluated policy survives a crash or a kill
                save_policy(run_dir, jax.device_get(algo.policy_params(states)))
            for row in rows:
                row["perf/sps"] = sps
            step = int(jax.device_get(states.env_steps[0]))
            for sink in sinks:
                sink.log(step, rows)
            if run.video.every and not last and (index + 1) % (run.eval.every * run.video.every) == 0:
                film(algo, states, run, run_dir, sinks, step, f"step{step}")
        summary = {
            "algo": run.algo_name,
            "env": run.env.id,
            "seeds": [m["seed"] for m in members],
            **({"members": members} if run.sweep else {}),
            "env_steps": schedule.total_steps,
            "wall_s": round(time.perf_counter() - start, 3),
            "compile_s": round(compile_s, 3),
            "train_s": round(train_s, 3),
            "sps": round(schedule.total_steps * len(members) / train_s, 1),
            "final": final,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if run.video.enabled:
            film(algo, states, run, run_dir, sinks, step, "final")
        draw_curves(run_dir, sinks, step, len(members))
    except BaseException as err:
        # KeyboardInterrupt included: sinks learn that the run did not finish
        summary = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        raise
    finally:
        for sink in sinks:
            sink.close(summary)
    return summary


@dataclasses.dataclass(frozen=True)
class _Deterministic:
    """`(params, obs, key) -> action`: an algorithm's deterministic policy.

    Hashable by the algorithm, so `jax.tree_util.Partial(_Deterministic(algo),
    params)` keeps params a traced argument and later films of the same run
    reuse the compiled rollout.
    """

    algo: Any

    def __call__(self, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        return self.algo.policy(params, obs, key, True)


def film(algo: Algorithm, states: Any, run: RunConfig, run_dir: Path, sinks: list[Sink], step: int, name: str) -> None:
    """Records one episode of member `run.video.member`'s deterministic policy
    to `videos/<name>.mp4` and hands it to sinks that take videos.

    A failure to film never stops training: it is reported as a warning.
    """
    from jaxrl.video import record_episode

    member = run.video.member
    params = jax.tree.map(lambda x: x[member], algo.policy_params(states))
    act = jax.tree_util.Partial(_Deterministic(algo), params)
    try:
        result = record_episode(algo.env, act, jax.random.PRNGKey(step), run_dir / "videos", name, max_frames=run.video.max_frames)
    except Exception as err:  # noqa: BLE001 (a video is never worth a lost run)
        warnings.warn(f"could not record a video: {type(err).__name__}: {err}", stacklevel=2)
        return
    if result.mp4 is None:
        warnings.warn(f"no video: {result.reason}", stacklevel=2)
        return
    for sink in sinks:
        if hasattr(sink, "log_video"):
            sink.log_video(step, member, result.mp4)


def draw_curves(run_dir: Path, sinks: list[Sink], step: int, num_members: int) -> None:
    """Writes `curves.png` (return vs env steps, every member, mean and spread)
    and hands it to sinks that take images, for every member's run; a failure
    is only a warning."""
    from jaxrl.plots import plot_curves

    try:
        path = plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")
    except Exception as err:  # noqa: BLE001 (a plot is never worth a lost run)
        warnings.warn(f"could not draw curves.png: {type(err).__name__}: {err}", stacklevel=2)
        return
    for sink in sinks:
        if hasattr(sink, "log_image"):
            for member in range(num_members):
                sink.log_image(step, member, "curves", path)


def save_policy(run_dir: Path, params: Any) -> Path:
    """Writes the population's policy params (leading [P] axis) for `load_policy`.

    Written to a temporary file and renamed, so a kill mid-write leaves the
    previous policy intact.
    """
    path = run_dir / POLICY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(flax.serialization.to_bytes(params))
    os.replace(tmp, path)
    return path
