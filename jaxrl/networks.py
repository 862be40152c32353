"""Flax linen modules: the torso (conv layers for image observations, then an
MLP), policy heads and critics.

Hidden layers use orthogonal initialisation with gain sqrt(2), policy heads a
small gain (0.01) so the initial policy is close to its prior, value heads
gain 1: the initialisation the PPO implementation studies found to matter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu, "silu": nn.silu}


def orthogonal(gain: float) -> nn.initializers.Initializer:
    """flax's orthogonal initialiser, whose QR never runs batched.

    Under vmap (QEnsemble's stacked critics, a vmapped population) flax's
    initialiser becomes one batched LAPACK QR, and jaxlib 0.10's CPU kernels
    run a batch by handing its pieces to XLA's intra-op thread pool and
    blocking a pool thread until they finish. Two such calls at once block
    both threads of a 2-core pool for good: the CPU deadlock of
    docs/benchmarks.md. Here a batch of keys becomes a loop of single QRs
    (same values, bit for bit), so no program jaxrl builds needs the
    deadlock guard on that account (`jaxrl.host`).
    """
    base = nn.initializers.orthogonal(gain)

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        @jax.custom_batching.custom_vmap
        def draw(key):
            return base(key, shape, dtype)

        @draw.def_vmap
        def _one_at_a_time(axis_size, in_batched, key):
            return jax.lax.map(draw, key), True

        return draw(key)

    return init


def _dense(features: int, gain: float, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, kernel_init=orthogonal(gain), bias_init=nn.initializers.zeros, name=name)


def patches(images: jax.Array, kernel: int, stride: int) -> jax.Array:
    """Every kernel x kernel window of images [..., H, W, C], VALID padding:
    [..., H', W', kernel * kernel * C], H' = (H - kernel) // stride + 1.

    A conv layer is then one matrix product with a [kernel * kernel * C, features]
    kernel. XLA:CPU runs these tiny convolutions (MinAtar's 10 x 10 boards) as
    its convolution op about ten times slower, forward and backward, than as
    these slices and one product (docs/benchmarks.md).
    """
    rows, cols = (_conv_size(side, kernel, stride) for side in images.shape[-3:-1])
    return jnp.concatenate(
        [
            images[..., i : i + stride * (rows - 1) + 1 : stride, j : j + stride * (cols - 1) + 1 : stride, :]
            for i in range(kernel)
            for j in range(kernel)
        ],
        axis=-1,
    )


@dataclasses.dataclass(frozen=True)
class Conv:
    """Conv layers in front of a torso's dense ones, for observations that are images.

    layers: (features, kernel, stride) per layer: square kernels, VALID padding
        (MinAtar's reference network is one layer, (16, 3, 1)).
    image_shape: one observation as the env gives it, [H, W, C]; the networks
        take it flattened, [H * W * C], as every jaxrl env hands observations over.
    """

    layers: tuple[tuple[int, int, int], ...]
    image_shape: tuple[int, int, int]

    def output_shape(self) -> tuple[int, int, int]:
        """[H', W', C'] after the last layer; a side is <= 0 where a kernel outgrew the image."""
        height, width, channels = self.image_shape
        for features, kernel, stride in self.layers:
            height, width, channels = _conv_size(height, kernel, stride), _conv_size(width, kernel, stride), features
        return height, width, channels


def _conv_size(side: int, kernel: int, stride: int) -> int:
    """How many windows of `kernel` fit along `side` at `stride` (VALID padding)."""
    return (side - kernel) // stride + 1


class MLP(nn.Module):
    """The torso: obs [..., obs_dim] -> features [..., hidden[-1]].

    With `conv`, obs is first seen as an image [..., H, W, C] and goes through
    the conv layers, whose output is flattened. `extra` [..., k] (a Q critic's
    action) joins the observation's features before the dense layers.
    """

    hidden: Sequence[int]
    activation: str = "tanh"
    conv: Conv | None = None

    @nn.compact
    def __call__(self, x: jax.Array, extra: jax.Array | None = None) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        if self.conv is not None:
            batch = x.shape[:-1]
            x = x.reshape(*batch, *self.conv.image_shape)
            for i, (features, kernel, stride) in enumerate(self.conv.layers):
                x = act(_dense(features, np.sqrt(2.0), name=f"Conv_{i}")(patches(x, kernel, stride)))
            x = x.reshape(*batch, -1)
        if extra is not None:
            x = jnp.concatenate([x, extra], axis=-1)
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
    conv: Conv | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = _dense(self.action_dim, 0.01)(MLP(self.hidden, self.activation, self.conv)(obs))
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class CategoricalPolicy(nn.Module):
    """obs [..., obs_dim] -> logits [..., num_actions]."""

    num_actions: int
    hidden: Sequence[int]
    activation: str = "tanh"
    conv: Conv | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return _dense(self.num_actions, 0.01)(MLP(self.hidden, self.activation, self.conv)(obs))


class ValueCritic(nn.Module):
    """State value: obs [..., obs_dim] -> V [...]."""

    hidden: Sequence[int]
    activation: str = "tanh"
    conv: Conv | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return _dense(1, 1.0)(MLP(self.hidden, self.activation, self.conv)(obs)).squeeze(-1)


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


class QCritic(nn.Module):
    """Action value: (obs [..., obs_dim], action [..., action_dim]) -> Q [...]."""

    hidden: Sequence[int]
    activation: str = "relu"
    conv: Conv | None = None

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        return _dense(1, 1.0)(MLP(self.hidden, self.activation, self.conv)(obs, action)).squeeze(-1)


class QEnsemble(nn.Module):
    """`num_critics` independent Q critics with stacked params (one nn.vmap'd QCritic).

    (obs [..., obs_dim], action [..., action_dim]) -> Q [..., num_critics].
    Stacking runs the twin critics of TD3/SAC as one batched matmul per layer
    instead of two.
    """

    num_critics: int
    hidden: Sequence[int]
    activation: str = "relu"
    conv: Conv | None = None

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        critics = nn.vmap(
            QCritic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=-1,
            axis_size=self.num_critics,
        )
        return critics(self.hidden, self.activation, self.conv)(obs, action)


class DeterministicPolicy(nn.Module):
    """DDPG/TD3 actor: obs [..., obs_dim] -> action [..., action_dim] in (-1, 1)."""

    action_dim: int
    hidden: Sequence[int]
    activation: str = "relu"
    conv: Conv | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(_dense(self.action_dim, 0.01)(MLP(self.hidden, self.activation, self.conv)(obs)))


class TanhGaussianPolicy(nn.Module):
    """SAC actor: a Gaussian with state-dependent std, squashed by tanh (see `tanh_gaussian`).

    obs [..., obs_dim] -> (mean [..., action_dim], log_std [..., action_dim]) of
    the Gaussian before the tanh. log_std starts near `log_std_init` (the head's
    bias) and is clipped to [log_std_min, log_std_max], the usual guard against
    a collapsing or exploding std.
    """

    action_dim: int
    hidden: Sequence[int]
    activation: str = "relu"
    log_std_init: float = 0.0
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    conv: Conv | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.hidden, self.activation, self.conv)(obs)
        mean = _dense(self.action_dim, 0.01)(x)
        log_std = nn.Dense(
            self.action_dim,
            kernel_init=orthogonal(0.01),
            bias_init=nn.initializers.constant(self.log_std_init),
        )(x)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def tanh_gaussian(mean: jax.Array, log_std: jax.Array) -> distrax.Distribution:
    """tanh(N(mean, exp(log_std))) over [..., action_dim]: actions in (-1, 1).

    Its log_prob includes the change-of-variables term -sum log(1 - tanh(x)^2),
    computed by distrax's Tanh bijector in the overflow-free form
    2 (log 2 - x - softplus(-2x)). Prefer `sample_and_log_prob`: `log_prob` of a
    given action inverts the tanh and loses precision next to +-1.
    """
    base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
    return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))
