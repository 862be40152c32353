"""Several processes, one population: `distributed=true`.

Every process runs the same program on its own devices; `jax.distributed`
joins them, and the population's member axis is sharded over every device
of every process (jaxrl.runner). Only process 0 writes the run folder, logs,
wandb runs and checkpoints.

Where the coordinator is: jax's own detection on SLURM, Open MPI, Kubernetes
and Cloud TPU; elsewhere JAX_COORDINATOR_ADDRESS (host:port of process 0),
JAX_NUM_PROCESSES and JAX_PROCESS_ID.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

import jax
import numpy as np

from jaxrl.errors import ConfigError

__all__ = ["every_process", "from_writer", "initialize", "is_writer", "local_device_ids", "together"]

T = TypeVar("T")

_TEXT_BYTES = 4096
"""The longest text passed between processes (a refusal, a path); longer ones are cut."""


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be an integer") from None


def local_device_ids(environ: Mapping[str, str]) -> list[int] | None:
    """The `local_device_ids` to give `jax.distributed.initialize`: [] (every
    visible device) for a SLURM job with one task per node, None (jax's
    choice) otherwise. jax's SLURM detection restricts each task to the GPU
    numbered by its SLURM_LOCALID, right for one task per GPU but, with one
    task per node, it leaves all of a node's GPUs but the first idle; jax
    keeps a list it was given, and an empty one restricts nothing."""
    if environ.get("JAX_LOCAL_DEVICE_IDS") or "SLURM_LOCALID" not in environ:
        return None
    nodes = environ.get("SLURM_STEP_NUM_NODES") or environ.get("SLURM_NNODES")
    tasks = environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS")
    return [] if nodes is not None and nodes == tasks else None


def initialize() -> None:
    """Joins this process to the others (`jax.distributed.initialize`); call it
    before anything runs on a device; nothing when this process has joined
    already. ConfigError when the coordinator cannot be found (the message
    names the variables that set it) or JAX has started already."""
    if jax.distributed.is_initialized():
        return
    num_processes, process_id = _env_int("JAX_NUM_PROCESSES"), _env_int("JAX_PROCESS_ID")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        # jax would report it as a coordinator it cannot find
        raise ConfigError(
            f"JAX_PROCESS_ID={process_id} must be in 0..{num_processes - 1} (JAX_NUM_PROCESSES={num_processes})"
        )
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise ConfigError(
            "distributed=true must join the other processes before JAX starts, and this process has run JAX "
            "already: start it in a fresh process (python -m jaxrl.train distributed=true, or jaxrl.run before "
            "any other JAX call)"
        )
    # CPU processes exchange arrays through gloo (XLA:CPU has no collectives
    # of its own across processes); GPUs and TPUs use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # jax's preemption service takes SIGTERM from Python until the runner's
    # own handler replaces it, and a SIGTERM in between would be lost
    jax.config.update("jax_enable_preemption_service", False)
    try:
        jax.distributed.initialize(
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids(os.environ),
        )
    except ValueError as err:
        raise ConfigError(
            f"distributed=true could not find its coordinator ({str(err).splitlines()[0]}); outside SLURM, "
            "Open MPI, Kubernetes or a Cloud TPU, set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES "
            "and JAX_PROCESS_ID"
        ) from None


def is_writer() -> bool:
    """Whether this process writes the run's outputs (process 0)."""
    return jax.process_index() == 0


def every_process(value: int | np.ndarray) -> np.ndarray:
    """`value` of every process, in process order (one tiny all-gather; several processes only)."""
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(np.asarray(value, dtype=np.int64) if np.isscalar(value) else value)


def together(check: Callable[[], T], distributed: bool) -> T:
    """Runs `check`, which raises ConfigError to refuse the run, and returns
    its value. With several processes (`distributed`), each calls this at the
    same point and all raise the first refusing process's ConfigError when
    one refuses (only process 0 has a folder and outputs to refuse; each has
    its own memory): one that ended alone would leave the others to fail in
    their next collective once jax's timeouts expire (30 s for gloo on CPUs;
    5 minutes, then an abort, while starting the backend), with another exit
    status than 2. A single process raises at once."""
    if not distributed:
        return check()
    try:
        value, refusal = check(), None
    except ConfigError as err:
        value, refusal = None, err
    first = next((text for text in _texts(str(refusal) if refusal else "") if text), None)
    if refusal is not None:
        raise refusal
    if first is not None:
        raise ConfigError(first)
    return value


def from_writer(text: str) -> str:
    """Process 0's `text`, on every process (several processes only)."""
    return _texts(text)[0]


def _texts(text: str) -> list[str]:
    """`text` of every process, in process order (one all-gather of _TEXT_BYTES each)."""
    encoded = np.zeros(_TEXT_BYTES, np.uint8)
    raw = text.encode()[:_TEXT_BYTES]
    encoded[: len(raw)] = np.frombuffer(raw, np.uint8)
    return [bytes(row).rstrip(b"\0").decode(errors="replace") for row in every_process(encoded)]
