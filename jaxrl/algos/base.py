"""The algorithm contract and the pieces every algorithm shares.

An algorithm is a class built from an env and its config, exposing pure
functions (in the spirit of optax's init/update):

- `init(key, hp) -> state`: a pytree holding everything the run needs to go on
  (params, optimiser state, env state, last observation, normaliser statistics,
  buffers, PRNG key, env step count). `hp` is the config itself as a pytree
  (`hyperparams(config)`), carried in `state.hp`, so a population of
  hyperparameters is vmapped like seeds.
- `update(state) -> (state, metrics)`: one iteration, collect + learn, pure
  and jittable. `metrics` maps names to scalars; see `episode_metrics` for the
  episode statistics every algorithm reports.
- `policy_params(state) -> params`: what acting needs (network params and
  observation statistics), saved with the run for `load_policy`.
- `policy(params, obs, key, deterministic) -> action`: obs [*obs_shape] ->
  normalised action ([action_dim] in [-1, 1], or an int); vmap for batches.

Configs are frozen flax structs (rejax's pattern): fields made with
`static(...)` set shapes or code paths and live in the pytree's structure;
every other field is a float hyperparameter and a pytree leaf. Jitted code
reads hyperparameters from `state.hp` (`state.hp.gamma`, a traced array);
the algorithm's own `self.config` is a `StaticView` that refuses to hand out
a traced field, so a hyperparameter can never be baked in as a constant and
silently ignored by a sweep.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol, TypeVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.envs.base import TimeStep
from jaxrl.envs.normalize import RunningStats
from jaxrl.errors import ConfigError
from jaxrl.networks import ACTIVATIONS, Conv

__all__ = [
    "Algorithm",
    "PolicyParams",
    "StaticView",
    "check_network",
    "check_positive",
    "conv_torso",
    "episode_metrics",
    "hyperparams",
    "static",
    "traced_names",
]

C = TypeVar("C")


def static(default: Any) -> Any:
    """A config field that sets shapes or code paths: compiled in, not sweepable."""
    return struct.field(pytree_node=False, default=default)


@functools.cache
def traced_names(config_cls: type) -> tuple[str, ...]:
    """Names of the traced (float, sweepable) hyperparameters of a config class."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("pytree_node", True))


def hyperparams(config: C) -> C:
    """`config` as the pytree carried in `state.hp`: traced fields become
    float32 [] arrays, static fields stay in the structure."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), config)


class StaticView:
    """A config's static fields, read-only; reading a traced field raises.

    Algorithms keep this as `self.config`, so code that runs under jit can only
    take a traced hyperparameter from `state.hp`.
    """

    __slots__ = ("_config",)

    def __init__(self, config: Any):
        object.__setattr__(self, "_config", config)

    def __getattr__(self, name: str) -> Any:
        config = object.__getattribute__(self, "_config")
        if name in traced_names(type(config)):
            raise AttributeError(
                f"{name} is a traced hyperparameter of {type(config).__name__}: read state.hp.{name} "
                f"inside jitted code, so that a sweep over it takes effect"
            )
        return getattr(config, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a config is immutable")


def check_positive(config: Any, *names: str) -> None:
    """Raises ConfigError naming the first config field in `names` that is not > 0."""
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"algo.{name} must be positive, got {getattr(config, name)}")


def check_network(config: Any) -> None:
    """Raises ConfigError unless `config.hidden`, `config.activation` and `config.conv` make a torso."""
    if not config.hidden or min(config.hidden) <= 0:
        raise ConfigError(f"algo.hidden must be a non-empty list of positive widths, got {list(config.hidden)}")
    if config.activation not in ACTIVATIONS:
        raise ConfigError(f"unknown algo.activation {config.activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
    if any(min(layer) <= 0 for layer in config.conv):
        layers = [list(layer) for layer in config.conv]
        raise ConfigError(f"algo.conv takes [features, kernel, stride] per layer, all positive, got {layers}")


def conv_torso(config: Any, env: Any) -> Conv | None:
    """The conv layers `config.conv` asks for over `env`'s image observations; None without.

    Raises ConfigError, before anything compiles, where the env's observations
    are not images [H, W, C] or a kernel outgrows what the layers before leave.
    """
    if not config.conv:
        return None
    image_shape = env.spec.native_obs_shape
    if image_shape is None or len(image_shape) != 3:
        shape = list(image_shape or env.spec.obs_shape)
        raise ConfigError(
            f"algo.conv needs image observations [height, width, channels]; {env.name} "
            f"gives {shape}: leave algo.conv=[] for the dense layers alone"
        )
    conv = Conv(tuple(tuple(layer) for layer in config.conv), tuple(image_shape))
    if min(conv.output_shape()[:2]) <= 0:
        raise ConfigError(
            f"algo.conv={[list(layer) for layer in config.conv]} shrinks {env.name} "
            f"images {list(image_shape)} to nothing: use fewer layers, smaller kernels or strides"
        )
    return conv


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

    def init(self, key: jax.Array, hp: Any) -> Any:
        """A fresh training state of one member, from a PRNG key and its
        hyperparameters `hp` (the algorithm's config as a pytree)."""
        ...

    def update(self, state: Any) -> tuple[Any, dict[str, jax.Array]]:
        """One iteration (collect `steps_per_update` env steps, learn): the next
        state and this iteration's metrics ({name: [] scalar})."""
        ...

    def policy_params(self, state: Any) -> Any:
        """What `policy` needs from a state (saved in policy.msgpack)."""
        ...

    def policy(self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """obs [*obs_shape] -> normalised action ([action_dim] in [-1, 1], or an int)."""
        ...


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
