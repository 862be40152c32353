"""The algorithm contract and the pieces every algorithm shares.

An algorithm is a class built from an env and its config dataclass, exposing
pure functions (in the spirit of optax's init/update):

- `init(key, hp) -> state`: a pytree holding everything the run needs to go on
  (params, optimiser state, env state, last observation, normaliser statistics,
  buffers, PRNG key, env step count). `hp` is the dict of traced
  hyperparameters (`hyperparams(config)`), so a population of them can be
  vmapped like seeds.
- `update(state) -> (state, metrics)`: one iteration, collect + learn, pure
  and jittable. `metrics` maps names to scalars; see `episode_metrics` for the
  episode statistics every algorithm reports.
- `policy_params(state) -> params`: what acting needs (network params and
  observation statistics), saved with the run for `load_policy`.
- `policy(params, obs, key, deterministic) -> action`: obs [*obs_shape] ->
  normalised action ([action_dim] in [-1, 1], or an int); vmap for batches.

Config dataclasses are frozen and plain: fields that set shapes are static;
fields made with `traced(...)` are float hyperparameters that become array
leaves of `state.hp`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.envs.base import TimeStep
from jaxrl.envs.normalize import RunningStats
from jaxrl.errors import ConfigError
from jaxrl.networks import ACTIVATIONS


def traced(default: float) -> Any:
    """A config field that is a traced float hyperparameter (vmappable)."""
    return dataclasses.field(default=default, metadata={"traced": True})


def traced_names(config_cls: type) -> tuple[str, ...]:
    """Names of the traced hyperparameter fields of a config dataclass."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("traced"))


def check_positive(config: Any, *names: str) -> None:
    """Raises ConfigError naming the first config field in `names` that is not > 0."""
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"algo.{name} must be positive, got {getattr(config, name)}")


def check_network(config: Any) -> None:
    """Raises ConfigError unless `config.hidden` and `config.activation` make an MLP."""
    if not config.hidden or min(config.hidden) <= 0:
        raise ConfigError(f"algo.hidden must be a non-empty list of positive widths, got {list(config.hidden)}")
    if config.activation not in ACTIVATIONS:
        raise ConfigError(f"unknown algo.activation {config.activation!r}; choose one of: {', '.join(ACTIVATIONS)}")


def hyperparams(config: Any) -> dict[str, jax.Array]:
    """The traced hyperparameters of `config` as float32 scalars."""
    return {name: jnp.asarray(getattr(config, name), jnp.float32) for name in traced_names(type(config))}


@struct.dataclass
class PolicyParams:
    """What acting needs, saved with a run for `load_policy`: the actor's
    params and the observation statistics it was trained with."""

    actor: Any
    obs_stats: RunningStats


class Algorithm(Protocol):
    """What the runner, evaluation, video and `load_policy` rely on."""

    env: Any
    config: Any
    steps_per_update: int  # env steps one `update` takes (all of its envs)

    def init(self, key: jax.Array, hp: dict[str, jax.Array]) -> Any: ...

    def update(self, state: Any) -> tuple[Any, dict[str, jax.Array]]: ...

    def policy_params(self, state: Any) -> Any: ...

    def policy(self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array: ...


def episode_metrics(steps: TimeStep) -> dict[str, jax.Array]:
    """Sums of finished-episode statistics over a batch of steps (any shape).

    The runner adds these over a chunk and divides by `episode/count`, so the
    logged `train/episode_return` is a true mean over finished episodes.
    """
    done = steps.done.astype(jnp.float32)
    return {
        "episode/return_sum": jnp.sum(steps.episode_return * done),
        "episode/length_sum": jnp.sum(steps.episode_length.astype(jnp.float32) * done),
        "episode/count": jnp.sum(done),
    }
