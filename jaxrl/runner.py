"""The host loop: jitted chunks of `scan(vmap(update))`, side effects between them.

The population (sweep members x seeds) is one leading axis of every leaf of
the training state. A run goes in four steps, each a function of its own:
`build` (schedule, env, algorithm), `compile_programs` (the init, chunk and
evaluation programs, compiled ahead of time), the folder, and `train`'s loop,
which runs one compiled chunk at a time and, between chunks, feeds the sinks
and emits events (`jaxrl.events`) to hooks: the policy file, videos and
curves today; checkpoints and alerts plug in the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import yaml

from jaxrl import compile_cache
from jaxrl.alerts import NONFINITE_METRIC, inject_nan, nonfinite
from jaxrl.algos import ALGORITHMS
from jaxrl.algos.base import Algorithm
from jaxrl.checkpoint import Checkpointer, Position, StopOnSignal
from jaxrl.config import ConfigError, RunConfig, Schedule, from_dict
from jaxrl.distributed import every_process, is_writer, together
from jaxrl.envs import make_env
from jaxrl.errors import Interrupted, Stopped, last_line
from jaxrl.evaluation import evaluate
from jaxrl.events import EPISODE_METRICS, CheckpointDone, ChunkDone, EvaluationDone, Hook, RunEnded
from jaxrl.files import FolderLock, json_text, read_jsonl, run_files, run_name, write_atomically
from jaxrl.host import check_cpu_guard
from jaxrl.outputs import POLICY_FILE, Curves, PolicyFile, Videos, check_run_dir
from jaxrl.sinks.base import FanOut, RunInfo, Sink
from jaxrl.sweeps import SweepResults, setting_labels

__all__ = [
    "POLICY_FILE",
    "Layout",
    "Programs",
    "Schedule",
    "build",
    "compile_programs",
    "member_keys",
    "population_devices",
    "population_hyperparams",
    "reduce_chunk",
    "train",
]

SUMMED = ("episode/return_sum", "episode/length_sum", "episode/count")


def build(run: RunConfig, previous: Position | None = None) -> tuple[Algorithm, Schedule]:
    """The chunk schedule (see `Schedule.for_run`; a resumed run passes the
    `previous` session's Position, whose chunk length and state sizing it
    keeps), then the env and the algorithm, told the rounded budget so that
    schedules such as lr annealing end at the last update."""
    schedule = Schedule.for_run(run, previous and previous.updates_per_chunk, previous and previous.sized_for)
    env = make_env(run.env.suite, run.env.name, run.env.backend, run.env.episode_length)
    algo = ALGORITHMS[run.algo_name](env, run.algo, schedule.total_steps, schedule.sized_for)
    assert algo.steps_per_update == schedule.steps_per_update, "Schedule.for_run disagrees with the algorithm"
    return algo, schedule


def population_hyperparams(run: RunConfig) -> Any:
    """The algorithm config as a pytree whose traced leaves have a leading [P]
    member axis, each member's sweep values applied."""
    configs = [
        run.algo.replace(**{k.removeprefix("algo."): v for k, v in m.items() if k.startswith("algo.")})
        for m in run.members()
    ]
    return jax.tree.map(lambda *values: jnp.asarray(values, jnp.float32), *configs)


def member_keys(run: RunConfig) -> jax.Array:
    """One PRNG key per member, from its seed alone, so a seed trains the same
    whether it runs alone or inside a population."""
    return jax.vmap(jax.random.PRNGKey)(jnp.asarray([m["seed"] for m in run.members()], jnp.uint32))


def population_devices(num_members: int, devices: Sequence[jax.Device] | None = None) -> tuple[list[jax.Device], int]:
    """The devices a population of `num_members` is sharded over, and its size
    once padded to a multiple of their count.

    One device per member when there are fewer members than `devices`
    (default: every device of every process), else all of them; a population
    that does not divide evenly is padded with copies of its last member, which
    train alongside and whose results are dropped, so that every device trains
    the same number of members. With several processes every process takes
    part (each program is collective): a small population gets as few devices
    of each process as hold it.
    """
    devices = list(jax.devices() if devices is None else devices)
    used = devices[:num_members]
    processes = sorted({d.process_index for d in devices})
    if {d.process_index for d in used} != set(processes):
        per_process = -(-num_members // len(processes))
        local = {p: [d for d in devices if d.process_index == p] for p in processes}
        used = [d for p in processes for d in local[p][:per_process]]
    padded = -(-num_members // len(used)) * len(used)
    if padded > num_members:
        print(
            f"{num_members} members are padded to {padded} with copies of the last one, {padded // len(used)} on each "
            f"of {len(used)} devices: make the population (seeds x sweep settings) a multiple of {len(used)} to "
            "waste none",
            file=sys.stderr,
            flush=True,
        )
    return used, padded


def pad_members(tree: Any, size: int) -> Any:
    """`tree` with `size` members: leaves [P, ...] become [size, ...] (size >= P),
    the added members copies of the last one."""

    def pad(x: Any) -> Any:
        return x if x.shape[0] == size else jnp.concatenate([x, jnp.repeat(x[-1:], size - x.shape[0], axis=0)])

    return jax.tree.map(pad, tree)


def _check_memory(shapes: Any, num_members: int, shards: int = 1) -> None:
    """Raises ConfigError when a population's training state alone, given as
    its shapes (ShapeDtypeStructs), cannot fit in the device's memory (the
    host's free RAM on a CPU). Replay buffers dominate it for the off-policy
    algorithms. A state split into `shards` equal parts over as many devices
    needs one part per device (but all of the host's RAM on a CPU).
    """
    needed = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        needed /= shards
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
            for name, total in zip(EPISODE_METRICS, ("episode/return_sum", "episode/length_sum"), strict=True):
                row[name] = float(metrics[total][:, i].sum() / count[i])
        rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class Programs:
    """A run's programs, compiled ahead of time for its population of P members.

    init(keys [P], hp [P]) -> states [P']: fresh training states.
    chunk(states [P']) -> (states, metrics {name: [updates_per_chunk, P]}):
        `updates_per_chunk` updates of every member; its input is donated.
    evaluate(states [P'], keys [P]) -> {"eval/return_mean": [P], ...}.
    state_shapes: the P members' training states' shapes and dtypes
        (ShapeDtypeStructs), as checkpoints hold them.
    seconds: wall time spent lowering and compiling the three.
    members, padded: P, and P' >= P, the population the programs train: on
        several devices an uneven population is padded with copies of its
        last member (`population_devices`); `unpad` and `pad` convert states.
    whole(tree) -> tree: states' arrays whole on this process (`Layout.whole`);
        metrics and evaluation results come whole already.
    """

    init: Any
    chunk: Any
    evaluate: Any
    state_shapes: Any
    seconds: float
    members: int
    padded: int
    whole: Any

    def unpad(self, states: Any) -> Any:
        """The P members' part of `states` ([P'] leaves)."""
        return states if self.padded == self.members else jax.tree.map(lambda x: x[: self.members], states)

    def pad(self, states: Any) -> Any:
        """`states` of the P members ([P] leaves), padded to the programs' P'."""
        return pad_members(states, self.padded)


def check_fits(
    algo: Algorithm, keys: jax.Array, hp: Any, devices: Sequence[jax.Device] | None = None
) -> tuple[Any, Layout, Any]:
    """The population's state shapes (ShapeDtypeStructs [P, ...]) for keys [P]
    and hp ([P] leaves), traced, not run; its Layout; and the shapes padded to
    [P', ...]. Raises ConfigError when that state cannot fit in memory (`_check_memory`)."""
    member_shapes = jax.eval_shape(jax.vmap(algo.init), keys, hp)
    layout = Layout.for_population(algo, member_shapes, keys.shape[0], devices)
    shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct((layout.padded, *s.shape[1:]), s.dtype), member_shapes)
    _check_memory(shapes, layout.padded, layout.shards)
    return member_shapes, layout, shapes


def compile_programs(
    algo: Algorithm,
    schedule: Schedule,
    keys: jax.Array,
    hp: Any,
    eval_episodes: int,
    devices: Sequence[jax.Device] | None = None,
    announce: str | None = None,
) -> Programs:
    """Lowers and compiles a population's programs; keys [P] and hp ([P] leaves)
    give the population's shapes.

    The work is split over `devices` (default: every device) by a `Layout`:
    the member axis over `population_devices(P, devices)`, padded to a
    multiple of them, or, for a lone member, its env batch
    (`Layout.for_population`). `init` and `evaluate`
    place their inputs themselves. With several processes
    (`distributed=true`) the population is sharded over every process's
    devices and stays there between programs: each process holds only its
    members' states, and gathers the metrics and evaluation results that
    the programs return, and anything else the host loop reads, with
    `Programs.whole`.

    Raises ConfigError, before anything is compiled, when the population's
    training state cannot fit in memory; else prints `announce` on stderr
    (so that users see slow compilation has begun).
    """
    start = time.perf_counter()
    num_members = keys.shape[0]
    # each process checks its own memory; with several, all refuse together (`together`)
    member_shapes, layout, shapes = together(lambda: check_fits(algo, keys, hp, devices), jax.process_count() > 1)
    keys, hp = pad_members((keys, hp), layout.padded)
    if announce:
        print(announce, file=sys.stderr, flush=True)

    def checked_update(state):
        state, metrics = algo.update(state)
        # the alerts' non-finite rule reads this flag from the rows: one
        # reduction per update instead of a host copy of every parameter
        return state, {**metrics, NONFINITE_METRIC: nonfinite(algo.policy_params(state))}

    def population_update(states):
        if layout.padded == 1:
            # vmap over a population of one turns every matmul into a batched
            # one, which XLA:CPU ran about 25% slower (bench/bench_ppo.py); a
            # lone member is updated unbatched instead.
            state, metrics = checked_update(jax.tree.map(lambda x: x[0], states))
            return jax.tree.map(lambda x: x[None], (state, metrics))
        return jax.vmap(checked_update)(states)

    def chunk(states):
        return jax.lax.scan(lambda s, _: population_update(s), states, None, length=schedule.updates_per_chunk)

    def evaluate_member(state, key):
        params = algo.policy_params(state)
        return evaluate(algo.env, lambda obs, k: algo.policy(params, obs, k, True), key, eval_episodes)

    def init_population(keys, hp):
        # member after member (lax.map), not vmap: each member's init is then
        # the same program whatever the population size, and init runs once per
        # run, so the loop costs nothing that matters. (It was first the
        # workaround for the CPU deadlock that `networks.orthogonal` removed.)
        return jax.lax.map(lambda member: algo.init(*member), (keys, hp))

    lowered = {
        "init": layout.jit(init_population, (layout.inputs, layout.inputs), layout.states).lower(keys, hp),
        "chunk": layout.jit(chunk, (layout.states,), (layout.states, layout.metrics), donate_argnums=0).lower(shapes),
        "evaluate": layout.jit(jax.vmap(evaluate_member), (layout.states, layout.inputs), layout.results).lower(shapes, keys),
    }
    check_cpu_guard(lowered)
    init, chunk_placed, evaluate_placed = (program.compile() for program in lowered.values())
    init = layout.placed(init, (layout.inputs, layout.inputs))
    # states from init are in place already, but restored ones (a checkpoint) are not
    chunk_placed = layout.placed(chunk_placed, (layout.states,))
    evaluate_placed = layout.placed(evaluate_placed, (layout.states, layout.inputs))

    def chunk(states):
        states, metrics = chunk_placed(states)
        return states, layout.whole(metrics)

    def evaluate_(states, keys):
        return layout.whole(evaluate_placed(states, keys))

    if layout.padded > num_members:
        # the padding members take inputs and give results that nobody sees
        init_padded, chunk_padded, evaluate_padded = init, chunk, evaluate_

        def init(keys, hp):
            return init_padded(*pad_members((keys, hp), layout.padded))

        def chunk(states):
            states, metrics = chunk_padded(states)
            return states, jax.tree.map(lambda x: x[:, :num_members], metrics)

        def evaluate_(states, keys):
            return jax.tree.map(lambda x: x[:num_members], evaluate_padded(states, pad_members(keys, layout.padded)))

    return Programs(
        init=init,
        chunk=chunk,
        evaluate=evaluate_,
        state_shapes=member_shapes,
        seconds=time.perf_counter() - start,
        members=num_members,
        padded=layout.padded,
        whole=layout.whole,
    )


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a population's arrays live, as shardings (None: one device, plain jit).

    devices: the devices in use; padded: the population they train, P' >= P
    (`population_devices`);
    states: the training state's sharding (a pytree of them, or one for all leaves);
    inputs: keys [P'] and hyperparameters [P']; metrics: {name: [updates, P']};
    results: evaluation results [P'].
    """

    devices: list[jax.Device]
    padded: int
    states: Any = None
    inputs: Any = None
    metrics: Any = None
    results: Any = None

    @property
    def shards(self) -> int:
        """Into how many parts the state is split, one per device: the member
        layout; a lone member's state is mostly replicated."""
        return len(self.devices) if isinstance(self.states, jax.sharding.NamedSharding) else 1

    @classmethod
    def for_population(
        cls, algo: Algorithm, shapes: Any, num_members: int, devices: Sequence[jax.Device] | None = None
    ) -> Layout:
        """Several members: split along the member axis over `population_devices`,
        padded to a multiple of them.
        One member on one process: its env batch (`env_state`, `obs`; [1, num_envs, ...])
        split over the most devices that divide num_envs, everything else
        replicated; XLA turns the learner's means over the batch into
        cross-device reductions (data parallelism). Otherwise one device."""
        devices = list(jax.devices() if devices is None else devices)
        if num_members == 1 and len(devices) > 1 and jax.process_count() == 1 and hasattr(shapes, "env_state"):
            num_envs = algo.config.num_envs
            used = devices[: math.gcd(num_envs, len(devices))]
            if len(used) > 1:
                whole, env = _sharding(used, axis="env"), _sharding(used, None, "env", axis="env")
                batched = lambda leaf: env if leaf.ndim >= 2 and leaf.shape[1] == num_envs else whole  # noqa: E731
                states = jax.tree.map(lambda _: whole, shapes).replace(
                    env_state=jax.tree.map(batched, shapes.env_state), obs=batched(shapes.obs)
                )
                return cls(used, 1, states, whole, whole, whole)
        used, padded = population_devices(num_members, devices)
        if len(used) == 1:
            return cls(used, padded)
        member = _sharding(used, "member")
        return cls(used, padded, member, member, _sharding(used, None, "member"), member)

    def jit(self, fn: Any, in_shardings: Any, out_shardings: Any, **kwargs: Any) -> Any:
        """jax.jit with these shardings (plain jax.jit on one device, so a lone
        device compiles exactly the unsharded program)."""
        if self.states is None:
            return jax.jit(fn, **kwargs)
        return jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings, **kwargs)

    def placed(self, compiled: Any, in_shardings: Any) -> Any:
        """`compiled`, first moving its inputs (made on the default device, or
        read from a checkpoint) to `in_shardings`; arrays a program placed
        already are not copied. With several processes each process holds the
        same whole input and places only the parts its own devices hold."""
        if self.states is None:
            return compiled
        if jax.process_count() > 1:

            def to_global(sharding: jax.sharding.Sharding, tree: Any) -> Any:
                def place(x: Any) -> jax.Array:
                    if isinstance(x, jax.Array) and not x.is_fully_addressable:
                        return x
                    host = np.asarray(x)
                    return jax.make_array_from_callback(host.shape, sharding, host.__getitem__)

                return jax.tree.map(place, tree)

            return lambda *args: compiled(*jax.tree.map(to_global, in_shardings, args))
        return lambda *args: compiled(*jax.device_put(args, in_shardings))

    def whole(self, tree: Any) -> Any:
        """`tree`'s arrays whole on this process: themselves on one process;
        with several, NumPy copies gathered from every process's devices. A
        collective then: every process calls it at the same point of the loop."""
        if jax.process_count() == 1:
            return tree
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)


def _sharding(devices: list[jax.Device], *spec: str | None, axis: str = "member") -> jax.sharding.NamedSharding:
    """Arrays split over a 1-D mesh of `devices` named `axis`, along the array axes where `spec` names it."""
    mesh = jax.sharding.Mesh(np.asarray(devices), (axis,))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))


def train(
    run: RunConfig,
    run_dir: Path,
    sinks: Sequence[Sink],
    resolved_config: dict[str, Any],
    hooks: Sequence[Hook] = (),
    resume_from: Path | None = None,
    lock: FolderLock | None = None,
) -> dict[str, Any]:
    """Trains the population, feeding `sinks` and `hooks`; returns the summary.

    The folder is checked, the env and algorithm built and the programs
    compiled first, so bad input fails before anything is written; then
    `run_dir` receives config.yaml, metrics.jsonl (through the sinks), the
    policy, checkpoints/, summary.json, videos/ and curves.png. `hooks` run
    after the built-in ones.

    resume_from: go on from the newest readable checkpoint in this run folder
    (from the start when it has none): `run_dir` itself, whose metrics.jsonl
    then loses the rows logged after that checkpoint, which are trained again
    exactly as they were; or, for a process other than 0 of several
    (`distributed=true`), process 0's folder, which is only read.

    While the loop runs, a first SIGINT or SIGTERM stops it after the current
    chunk with a checkpoint and raises `Stopped`; a second ends the process.
    summary.json's "status" is "finished", or, when training stops early,
    "stopped" (`jaxrl.errors.Stopped`, from a signal or a hook, its reason
    under "reason"), "interrupted" (KeyboardInterrupt: Ctrl-C or SIGTERM
    before the loop, as raised by the CLI) or "failed" (any other exception,
    its last line under "error"), with the env steps done and the last
    evaluation; the exception is re-raised. With several processes
    (`distributed=true`), a signal that reaches any of them while it
    compiles stops all of them with `Stopped` before the first chunk.

    While it writes in `run_dir`, this process holds the folder's lock
    (`jaxrl.files.FolderLock`): a folder that another process trains in is
    refused with a ConfigError, before compiling when resuming in place.
    `lock`: the folder's lock, when the caller took it already (released
    here too).
    """
    with lock or FolderLock(run_dir) as held:
        return _train(run, run_dir, sinks, resolved_config, hooks, resume_from, held)


def _take(lock: FolderLock, run_dir: Path) -> None:
    """Takes `run_dir`'s lock, or raises a ConfigError naming who trains there."""
    holder = lock.take()
    if holder is not None:
        raise ConfigError(
            f"run_dir {run_dir} is being trained by another process ({holder}); wait for it to end, or stop it "
            "(a SIGTERM checkpoints it) and resume then"
        )


def _claim(lock: FolderLock, run_dir: Path, in_place: bool) -> None:
    """Takes `run_dir`'s lock once the folder exists; ConfigError when another
    process holds it, or when another run filled a new folder meanwhile (a
    fixed run_dir launched twice, or two runs named in the same second)."""
    _take(lock, run_dir)
    if not in_place and run_files(run_dir):
        raise ConfigError(f"run_dir {run_dir} was filled by another run while this one compiled; give a new folder")


def _train(
    run: RunConfig,
    run_dir: Path,
    sinks: Sequence[Sink],
    resolved_config: dict[str, Any],
    hooks: Sequence[Hook],
    resume_from: Path | None,
    lock: FolderLock,
) -> dict[str, Any]:
    start = time.perf_counter()
    in_place = resume_from is not None and Path(resume_from).resolve() == run_dir.resolve()
    together(lambda: _take(lock, run_dir) if in_place else check_run_dir(run_dir), run.distributed)
    out = FanOut(sinks)
    checkpoints = Checkpointer(run_dir, run.checkpoint, out)
    source = checkpoints if resume_from is None or in_place else Checkpointer(Path(resume_from), run.checkpoint)
    if in_place:
        # a save that a kill cut short: a whole checkpoint's size, kept forever beside `keep` otherwise.
        # No other process writes here (the folder's lock)
        checkpoints.remove_partial()
    previous = source.position() if resume_from else None
    algo, schedule = build(run, previous)
    if previous is not None and previous.env_steps >= schedule.total_steps and not (
        previous.env_steps == schedule.total_steps and _ended_its_schedule(run, Path(resume_from), previous)
    ):
        # the loop would train no chunk: the run would end past the total that config.yaml then records,
        # or, at a checkpoint a stop wrote mid-run, without a final evaluation. The final checkpoint is
        # fine: a run killed after it, before summary.json, only ends again
        raise ConfigError(
            f"cannot resume {resume_from} with total_timesteps={run.total_timesteps}: its newest checkpoint is at "
            f"{previous.env_steps} env steps per member; give total_timesteps larger than {previous.env_steps}, "
            "or leave it out"
        )
    members = run.members()
    init_keys, eval_keys = jax.vmap(jax.random.split, out_axes=1)(member_keys(run))
    hp = population_hyperparams(run)
    # XLA compiles in C, where no signal can interrupt it; a KeyboardInterrupt
    # raised when Python resumes can land in one of jax's garbage-collector
    # callbacks, which swallow it, so a signal here is raised once compiling ends
    cache_dir = compile_cache.enable(run.compile_cache)
    # with several processes, process 0 alone speaks for the run (README: Several machines)
    speaks = not run.distributed or is_writer()
    if speaks and (repeats := run.sweep.repeats()):
        warnings.warn(repeats, stacklevel=2)
    with StopOnSignal() as stop, compile_cache.CacheCount() as cached:
        announce = f"compiling {run.algo_name} for {len(members)} member(s) ..." if speaks else None
        programs = compile_programs(algo, schedule, init_keys, hp, run.eval.episodes, announce=announce)
    if stop.requested and not run.distributed:
        raise Interrupted(stop.requested)
    # made only now: bad input and an interrupted compilation leave no folder behind
    run_dir.mkdir(parents=True, exist_ok=True)
    together(lambda: _claim(lock, run_dir, in_place), run.distributed)
    # with several processes, a signal that reached one while it compiled stops all of them before
    # the first chunk: one that ended alone would leave the others waiting in their first collective
    stopped_compiling = None
    if run.distributed and (received := _signal_among(every_process(int(stop.requested or 0)))):
        reason = f"{stop.requested.name} received" if stop.requested else f"another process received {received.name}"
        stopped_compiling = Stopped(f"{reason} while compiling", signal=received.name)
    # whole or not at all: resume=auto reads every candidate's config.yaml
    write_atomically(run_dir / "config.yaml", yaml.safe_dump(resolved_config, sort_keys=False))
    restored = source.restore(programs.state_shapes, len(members)) if resume_from else None
    if resume_from and not restored and source.steps():
        # starting over would write new checkpoints among the unreadable ones and drop their metrics
        raise RuntimeError(
            f"none of the checkpoints in {source.directory} (env steps {source.steps()}) can be read, as the warnings "
            "above say; its metrics, summary and checkpoints are left as they were"
        )
    if restored:
        states, eval_keys, position = restored
        if in_place:
            checkpoints.set_aside_after(position.env_steps)
        states = programs.pad(states)
        # sized_for: checkpoints older than the field had it unsaved
        position = dataclasses.replace(position, sessions=position.sessions + 1, sized_for=schedule.sized_for)
        if speaks:
            print(f"resuming {run_dir} at step {position.env_steps}", file=sys.stderr, flush=True)
    else:
        if resume_from and speaks:
            print(f"resuming {run_dir}: it has no checkpoint, so training starts over from step 0", file=sys.stderr,
                  flush=True)
        states = None
        position = Position(0, schedule.updates_per_chunk, 0, 0.0, 0.0, {}, sized_for=schedule.sized_for)
    _check_same_start(position.env_steps if restored else -1)
    last_evaluation = []
    if in_place:
        last_evaluation = _newest_evaluation(_truncate_metrics(run_dir / "metrics.jsonl", position.env_steps))
        # the last session's ending: left in place, jaxrl.watch would take this
        # session for ended and resume=auto skip it, were it killed
        (run_dir / "summary.json").unlink(missing_ok=True)
    builtin = [PolicyFile(run_dir, out if run.checkpoint.upload else None), Videos(algo, run, run_dir, out),
               Curves(run_dir, len(members), out, setting_labels(members) if run.sweep else None), *_sweep_hooks(run, run_dir)]
    # the outputs are process 0's (jaxrl.distributed): another would print and plot them again
    hooks = [*(builtin if speaks else []), *hooks]
    info = RunInfo(run_dir, run_name(run_dir), run.algo_name, run.env.id, resolved_config, members, schedule.total_steps,
                   position.env_steps, last_evaluation)

    summary: dict[str, Any] = {}
    # whether the last chunk's rows were logged: only then may a stop checkpoint its states
    logged = False
    # the last evaluation's policy params, on the host: the final ones once the last chunk (always evaluated) ran
    params = None

    def elapsed() -> float:
        return position.wall_s + time.perf_counter() - start

    def progress(status: str) -> dict[str, Any]:
        return {
            "status": status,
            "algo": run.algo_name,
            "env": run.env.id,
            "seeds": [m["seed"] for m in members],
            **({"members": members} if run.sweep else {}),
            "env_steps": position.env_steps,
            "wall_s": round(elapsed(), 3),
            "compile_s": round(programs.seconds, 3),
            "compile_cache": cached.summary(cache_dir) if cache_dir else None,
            "train_s": round(position.train_s, 3),
            # XLA reads them once, at start: what decided this session's speed
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            **({"sessions": position.sessions} if position.sessions > 1 else {}),
            "final": position.final,
        }

    # a second signal ends the process at once until the run is over, cleanup included
    with StopOnSignal() as stop:
        try:
            if states is None:
                # waited for here: jax returns before the program has run, and the first chunk's
                # time, which would wait for it, is training time (`sps`, `train_s`)
                states = jax.block_until_ready(programs.init(init_keys, hp))
            out.open(info)
            if restored:
                _load_hook_states(hooks, position.hooks)
            for hook in hooks:
                hook.on_start(info)
            if stopped_compiling is not None:
                raise stopped_compiling
            for index in range(position.chunks_done, schedule.num_chunks):
                logged = False
                chunk_start = time.perf_counter()
                states = inject_nan(states, run.alerts, index)
                states, metrics = programs.chunk(states)
                metrics = jax.device_get(metrics)
                seconds = time.perf_counter() - chunk_start
                rows = reduce_chunk(metrics)
                step = int(jax.device_get(programs.whole(states.env_steps))[0])
                last = index == schedule.num_chunks - 1
                evaluated = last or (index + 1) % run.eval.every == 0
                final = position.final
                if evaluated:
                    # from the chunk's index alone, so an evaluation's episodes do not depend on how
                    # many evaluations came before it (eval.every)
                    keys = jax.vmap(jax.random.fold_in)(eval_keys, jnp.full(len(members), index, jnp.uint32))
                    results = jax.device_get(programs.evaluate(states, keys))
                    final = {k: [float(x) for x in v] for k, v in results.items()}
                    for i, row in enumerate(rows):
                        row.update({k: v[i] for k, v in final.items()})
                position = dataclasses.replace(
                    position, chunks_done=index + 1, env_steps=step, train_s=position.train_s + seconds, final=final
                )
                if evaluated:
                    params = jax.device_get(programs.unpad(programs.whole(algo.policy_params(states))))
                    event = EvaluationDone(index, step, final, params)
                    for hook in hooks:
                        hook.on_evaluation(event)
                sps = schedule.updates_per_chunk * schedule.steps_per_update / seconds
                # time since the run began (compilation and earlier sessions included): time-to-return curves
                wall = elapsed()
                for row in rows:
                    row["perf/sps"], row["perf/wall_s"] = sps, wall
                out.log(step, rows)
                logged = True
                stopped = None
                try:
                    for hook in hooks:
                        hook.on_chunk(ChunkDone(index, last, step, rows, states, evaluated))
                except Stopped as err:
                    stopped = err
                if stop.requested and not last and stopped is None:
                    stopped = Stopped(f"{stop.requested.name} received", signal=stop.requested.name)
                elif stop.requested and stopped is not None and stopped.signal is None:
                    stopped.signal = stop.requested.name  # a hook stopped a run that was being preempted too
                stopped, due = _agree(stopped, checkpoints.due(index + 1, last))
                if stopped is not None:
                    raise stopped
                if due:
                    _checkpoint(checkpoints, hooks, programs.unpad(programs.whole(states)), eval_keys,
                                dataclasses.replace(position, wall_s=elapsed()), final=last)
            summary = {**progress("finished"), "sps": round(position.env_steps * len(members) / position.train_s, 1)}
            if params is None:  # resumed at the final checkpoint: no chunk ran this session
                params = jax.device_get(programs.unpad(programs.whole(algo.policy_params(states))))
            for hook in hooks:
                hook.on_end(RunEnded(position.env_steps, summary, states, params))
            # last: a run killed before it (in a slow video, say) is unfinished, and its resume
            # restores the final checkpoint, trains no chunk and makes the end's outputs again
            write_atomically(run_dir / "summary.json", json_text(summary))
        except Stopped as err:
            if err.save and logged:
                saved = _checkpoint(checkpoints, hooks, programs.unpad(programs.whole(states)), eval_keys,
                                    dataclasses.replace(position, wall_s=elapsed()))
                if saved is not None:
                    err.reason += f"; checkpoint at step {position.env_steps}"
            # process 0's verdict: the other processes never write checkpoints (`_train_quietly`).
            # A stop before any step (while compiling) loses nothing: it stays resumable where
            # checkpoints are on, though none was saved yet.
            if speaks and not checkpoints.steps() and (position.env_steps or not run.checkpoint.enabled):
                err.resumable = False
                why = "checkpoint.enabled=false" if not run.checkpoint.enabled else "none was saved before the stop"
                err.reason += f"; no checkpoint ({why}), so a resume starts over"
            summary = {**progress("stopped"), "reason": err.reason}
            if err.signal:
                summary["signal"] = err.signal
            if not err.save:
                # resuming unchanged would replay the same steps to the same bad state
                summary["bad_state"] = True
            _write_quietly(run_dir / "summary.json", summary)
            raise
        except KeyboardInterrupt:
            summary = progress("interrupted")
            _write_quietly(run_dir / "summary.json", summary)
            raise
        except BaseException as err:
            summary = {**progress("failed"), "error": last_line(err)}
            _write_quietly(run_dir / "summary.json", summary)
            raise
        finally:
            for hook in hooks:
                _exit_quietly(hook, summary)
            # sinks learn how the run ended: W&B marks an unfinished run failed
            out.close(summary)
            checkpoints.close()
            if source is not checkpoints:
                source.close()
    return summary


def _hook_names(hooks: Sequence[Hook]) -> list[str]:
    """A name per hook for its saved state: its class's ("module.Class"), then `#2`, `#3`, ... for
    more of one class (a hook that wraps another, as `jaxrl.train._InFolder` does for processes other
    than 0, by its `__wrapped__`, Python's name for the object a wrapper wraps)."""
    names, seen = [], Counter()
    for hook in hooks:
        cls = type(getattr(hook, "__wrapped__", hook))
        name = f"{cls.__module__}.{cls.__qualname__}"
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return names


def _checkpoint(
    checkpoints: Checkpointer, hooks: Sequence[Hook], states: Any, eval_keys: jax.Array, position: Position, final: bool = False
) -> Path | None:
    """Saves a checkpoint of `states` ([P] leaves) with the hooks' states as of it, and tells the
    hooks how it went (`on_checkpoint`); its folder, or None (failed, or checkpoints off)."""
    path = checkpoints.save(states, eval_keys, dataclasses.replace(position, hooks=hook_states(hooks)), final=final)
    if checkpoints.config.enabled:
        event = CheckpointDone(position.env_steps, path, checkpoints.failure, checkpoints.steps())
        for hook in hooks:
            hook.on_checkpoint(event)
    return path


def hook_states(hooks: Sequence[Hook]) -> dict[str, Any]:
    """The hooks' `state()` for a checkpoint's `Position.hooks`, by `_hook_names`; hooks with none left
    out. A state that fails or is not JSON is left out with a warning: it must not cost the checkpoint."""
    states = {}
    for name, hook in zip(_hook_names(hooks), hooks):
        try:
            state = hook.state()
            json.dumps(state)  # what orbax's JsonSave does with it
        except Exception as err:  # noqa: BLE001 (a hook's bug; the training state is what must be saved)
            warnings.warn(f"hook {name}'s state() cannot be saved ({last_line(err)}); the checkpoint goes "
                          "without it, and a resume from it starts that hook afresh", RuntimeWarning, stacklevel=2)
            continue
        if state is not None:
            states[name] = state
    return states


def _load_hook_states(hooks: Sequence[Hook], saved: dict[str, Any]) -> None:
    """Hands each hook the state a checkpoint saved for it; one that fails to take it is warned about."""
    for name, hook in zip(_hook_names(hooks), hooks):
        if name not in saved:
            continue
        try:
            hook.load_state(saved[name])
        except Exception as err:  # noqa: BLE001 (a resume must not fail for good on a hook's saved state)
            warnings.warn(f"hook {name} could not take its saved state ({last_line(err)}); it goes on without it",
                          RuntimeWarning, stacklevel=2)


def _check_same_start(step: int) -> None:
    """With several processes, raises RuntimeError unless all start from the
    same checkpoint step (-1: none): one that could not read process 0's run
    folder would train other members' states from scratch."""
    if jax.process_count() == 1:
        return
    steps = every_process(step).tolist()
    if len(set(steps)) > 1:
        raise RuntimeError(
            f"the processes start from different checkpoints (env steps by process, -1 for none: {steps}); "
            "every process must read process 0's run folder: put it on a filesystem all of them share"
        )


def _agree(stopped: Stopped | None, due: bool) -> tuple[Stopped | None, bool]:
    """What every process does after this chunk (`distributed=true`; on one
    process, `stopped` and `due` themselves), from one tiny all-gather.

    All stop when any asks to (a signal, an alert on process 0): one that
    went on would wait forever in the next chunk's collectives; the stop
    names the signal any process received (`_signal_among`), so that process
    0's summary tells a preemption of another machine as its own. The stopped
    states are saved unless a process refuses (an alert that saw NaNs), and a
    checkpoint is written when any process has one due (process 0, the
    writer, counts `checkpoint.every_s` by its own clock): both gather the
    states, which every process must then do together."""
    if jax.process_count() == 1:
        return stopped, due
    signum = int(signal.Signals[stopped.signal]) if stopped is not None and stopped.signal else 0
    votes = every_process((stopped is not None) | (stopped is not None and not stopped.save) << 1 | due << 2 | signum << 3)
    received = _signal_among(votes >> 3)
    if stopped is None and (votes & 1).any():
        stopped = Stopped(f"another process received {received.name}" if received else "another process stopped")
    if stopped is not None:
        stopped.save = not (votes & 2).any()
        stopped.signal = received.name if received else None
    return stopped, bool((votes & 4).any())


def _signal_among(codes: np.ndarray) -> signal.Signals | None:
    """The signal that stopped processes whose signal numbers are `codes` (0: none), shape
    (processes,): SIGTERM where any received it (a preemption, which awaits a resume), else the first."""
    received = [signal.Signals(code) for code in codes.tolist() if code]
    return signal.SIGTERM if signal.SIGTERM in received else next(iter(received), None)


def _ended_its_schedule(run: RunConfig, folder: Path, position: Position) -> bool:
    """Whether `position` (the newest checkpoint in `folder`) is the final one of the session
    that wrote it: at the end of the schedule of the total_timesteps its config.yaml records."""
    recorded = from_dict(yaml.safe_load((folder / "config.yaml").read_text()))
    schedule = Schedule.for_run(recorded, position.updates_per_chunk, position.sized_for)
    return position.env_steps == schedule.total_steps


def _truncate_metrics(path: Path, step: int) -> list[dict[str, Any]]:
    """Drops the rows of metrics.jsonl logged after env step `step` (all of
    them for step 0), and a torn last line that a kill left: a resumed run
    logs them again. Rewritten through a temporary file, so a kill meanwhile
    leaves the old file whole. Returns the rows kept."""
    if not path.exists():
        return []
    rows = [row for row in read_jsonl(path) if row.get("step", step + 1) <= step]
    write_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))
    return rows


def _newest_evaluation(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """metrics.jsonl's rows of its newest evaluated point, one per member, with
    the null of a non-finite value read back as NaN (`RunInfo.last_evaluation`)."""
    evaluated = [row for row in rows if "eval/return_mean" in row]
    if not evaluated:
        return []
    step = max(row["step"] for row in evaluated)
    return [{k: math.nan if v is None else v for k, v in row.items()} for row in evaluated if row["step"] == step]


def _sweep_hooks(run: RunConfig, run_dir: Path) -> list[Hook]:
    """sweep.csv, the leaderboard and sweep.png, for a sweep only."""
    return [SweepResults(run.members(), run_dir)] if run.sweep else []


def _exit_quietly(hook: Hook, summary: dict[str, Any]) -> None:
    """Tells a hook how the run ended; its failure is a warning, so that it
    neither hides the error that ended the run nor keeps the sinks open."""
    try:
        hook.on_exit(summary)
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"{type(hook).__name__} failed at the end of the run: {last_line(err)}", stacklevel=2)


def _write_quietly(path: Path, summary: dict[str, Any]) -> None:
    """Writes a stopped run's summary.json; a failure here (a full disk) must
    not hide the error that stopped the run."""
    try:
        write_atomically(path, json_text(summary))
    except OSError:
        pass
