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

import jax

from jaxrl.errors import ConfigError

__all__ = ["initialize", "is_writer"]


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be an integer") from None


def initialize() -> None:
    """Joins this process to the others (`jax.distributed.initialize`); call it
    before anything runs on a device. ConfigError when the coordinator cannot
    be found: the message names the variables that set it."""
    # CPU processes exchange arrays through gloo (XLA:CPU has no collectives
    # of its own across processes); GPUs and TPUs use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            num_processes=_env_int("JAX_NUM_PROCESSES"),
            process_id=_env_int("JAX_PROCESS_ID"),
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
