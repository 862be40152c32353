"""Running statistics for observation and reward normalisation (pure functions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    """Mean and variance of a stream of vectors, merged batch by batch.

    mean, var: [*shape] float32; count: [] float32 (starts at a tiny value so
    the first merge takes the batch's statistics).
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningStats:
        """Empty statistics for vectors of `shape` (normalising by them is the identity)."""
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(1e-4, jnp.float32))

    def update(self, batch: jax.Array) -> RunningStats:
        """Merges a batch [N, *shape] (parallel variance formula of Chan et al.)."""
        batch = batch.reshape((-1, *self.mean.shape))
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), jnp.asarray(batch.shape[0], jnp.float32)
        delta = b_mean - self.mean
        total = self.count + b_count
        mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        return RunningStats(mean, m2 / total, total)

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        """(x - mean) / std, clipped to [-clip, clip]; x [..., *shape]."""
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


@struct.dataclass
class RewardScaler:
    """Scales rewards by the std of the discounted return (as gym's NormalizeReward).

    returns: [num_envs] running discounted return of each env's episode.
    stats: RunningStats over those returns (scalar shape).
    """

    returns: jax.Array
    stats: RunningStats

    @classmethod
    def create(cls, num_envs: int) -> RewardScaler:
        """A scaler for `num_envs` parallel envs that starts at scale 1."""
        return cls(jnp.zeros((num_envs,), jnp.float32), RunningStats.create(()))

    def update(self, reward: jax.Array, done: jax.Array, gamma: jax.Array) -> RewardScaler:
        """Feeds one step of rewards [num_envs] and episode ends [num_envs]."""
        returns = self.returns * gamma + reward
        return RewardScaler(jnp.where(done, 0.0, returns), self.stats.update(returns))

    def scale(self, reward: jax.Array) -> jax.Array:
        """reward [...] / std of the discounted return."""
        return reward / jnp.sqrt(self.stats.var + 1e-8)
