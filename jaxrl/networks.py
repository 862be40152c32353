"""Flax linen modules: MLP torso, policy heads and critics.

Hidden layers use orthogonal initialisation with gain sqrt(2), policy heads a
small gain (0.01) so the initial policy is close to its prior, value heads
gain 1: the initialisation the PPO implementation studies found to matter.
"""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu, "silu": nn.silu}


def _dense(features: int, gain: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(gain), bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """Fully connected torso: [..., in] -> [..., hidden[-1]]."""

    hidden: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(_dense(width, np.sqrt(2.0))(x))
        return x


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian with a state-independent log std.

    obs [..., obs_dim] -> (mean [..., action_dim], log_std [..., action_dim]).
    """

    action_dim: int
    hidden: Sequence[int]
    activation: str = "tanh"
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = _dense(self.action_dim, 0.01)(MLP(self.hidden, self.activation)(obs))
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class CategoricalPolicy(nn.Module):
    """obs [..., obs_dim] -> logits [..., num_actions]."""

    num_actions: int
    hidden: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return _dense(self.num_actions, 0.01)(MLP(self.hidden, self.activation)(obs))


class ValueCritic(nn.Module):
    """State value: obs [..., obs_dim] -> V [...]."""

    hidden: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return _dense(1, 1.0)(MLP(self.hidden, self.activation)(obs)).squeeze(-1)


def policy_distribution(discrete: bool, outputs) -> distrax.Distribution:
    """The action distribution for a policy head's outputs.

    discrete: logits [..., n] -> Categorical; continuous: (mean, log_std) ->
    MultivariateNormalDiag over [..., action_dim].
    """
    if discrete:
        return distrax.Categorical(logits=outputs)
    mean, log_std = outputs
    return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))


def deterministic_action(discrete: bool, outputs) -> jax.Array:
    """The mode of `policy_distribution(discrete, outputs)`: argmax or mean."""
    if discrete:
        return jnp.argmax(outputs, axis=-1)
    return outputs[0]
