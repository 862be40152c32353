"""Deep Deterministic Policy Gradient (Lillicrap et al., 2016), with TD3's three switches.

A deterministic tanh actor, Q critic(s) and target copies of both. TD3
(Fujimoto et al., 2018) is this algorithm with `twin_critics` (bootstrap from
the minimum of two critics), `policy_delay` > 1 (actor and target updates every
few critic steps) and `target_noise` > 0 (target policy smoothing); see td3.py.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.algos.base import static
from jaxrl.algos.common import adam_state
from jaxrl.algos.losses import ddpg_actor_loss, ddpg_critic_loss
from jaxrl.algos.offpolicy import Learner, OffPolicy, OffPolicyConfig, OffPolicyState, PolicyParams
from jaxrl.algos.replay import Transition
from jaxrl.errors import ConfigError
from jaxrl.networks import DeterministicPolicy, QEnsemble


@struct.dataclass
class DDPGConfig(OffPolicyConfig):
    """DDPG settings: off-policy ones plus exploration noise and the TD3 switches."""

    twin_critics: bool = static(False)
    noise_std: float = 0.1  # stationary std of the exploration noise, in [-1, 1] action units
    target_noise: float = 0.0  # std of target policy smoothing noise (0: off)
    target_noise_clip: float = 0.5

    def validate(self, total_timesteps: int) -> None:
        """OffPolicyConfig's checks plus the noise scales."""
        super().validate(total_timesteps)
        for name in ("noise_std", "target_noise", "target_noise_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"algo.{name} must be >= 0, got {getattr(self, name)}")

    def unused(self) -> dict[str, str]:
        """OffPolicyConfig's, plus the smoothing clip while smoothing is off."""
        unused = super().unused()
        if self.target_noise == 0:
            unused["target_noise_clip"] = "it clips target policy smoothing, which algo.target_noise=0 turns off; set algo.target_noise > 0"
        return unused


@struct.dataclass
class DDPGPolicyParams(PolicyParams):
    """PolicyParams plus the exploration std, for stochastic (non-deterministic) acting."""

    noise_std: jax.Array  # [] float32


class DDPG(OffPolicy):
    """DDPG (and, with its switches on, TD3)."""

    config_cls = DDPGConfig

    def __init__(self, env, config: DDPGConfig, total_timesteps: int, sized_for: int | None = None):
        super().__init__(env, config, total_timesteps, sized_for)
        self.actor_net = DeterministicPolicy(env.spec.action_dim, config.hidden, config.activation, conv=self.conv)
        self.critic_net = QEnsemble(2 if config.twin_critics else 1, config.hidden, config.activation, conv=self.conv)

    def init_learner(self, key: jax.Array, hp: DDPGConfig) -> Learner:
        """Actor and critic(s), targets equal to them, Adam states."""
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(self.env.spec.obs_shape, jnp.float32)
        action = jnp.zeros((self.env.spec.action_dim,), jnp.float32)
        params = {"actor": self.actor_net.init(k_actor, obs), "critic": self.critic_net.init(k_critic, obs, action)}
        return Learner(params=params, target=dict(params), opt_state={k: adam_state(v) for k, v in params.items()})

    def explore(self, params, obs, noise, hp):
        """Actor output plus `noise_std` x noise, clipped: [N, *obs_shape] -> [N, action_dim]."""
        return jnp.clip(self.actor_net.apply(params["actor"], obs) + hp.noise_std * noise, -1.0, 1.0)

    def critic_loss(self, critic: Any, learner: Learner, batch: Transition, key: jax.Array, hp):
        """`losses.ddpg_critic_loss`, bootstrapping at the target actor's action,
        smoothed by clipped Gaussian noise (TD3's target policy smoothing; off at
        target_noise 0)."""
        next_action = self.actor_net.apply(learner.target["actor"], batch.next_obs)
        smoothing = jnp.clip(
            hp.target_noise * jax.random.normal(key, next_action.shape),
            -hp.target_noise_clip,
            hp.target_noise_clip,
        )
        next_action = jnp.clip(next_action + smoothing, -1.0, 1.0)
        next_q = self.critic_net.apply(learner.target["critic"], batch.next_obs, next_action)
        q = self.critic_net.apply(critic, batch.obs, batch.action)
        return ddpg_critic_loss(q, batch.reward, batch.terminated, next_q, hp.gamma)

    def actor_loss(self, actor: Any, learner: Learner, batch: Transition, key: jax.Array, hp):
        """`losses.ddpg_actor_loss` at the actor's actions, through the online critics."""
        action = self.actor_net.apply(actor, batch.obs)
        return ddpg_actor_loss(self.critic_net.apply(learner.params["critic"], batch.obs, action))

    def policy_params(self, state: OffPolicyState) -> DDPGPolicyParams:
        """Actor, observation statistics and the exploration std."""
        return DDPGPolicyParams(state.learner.params["actor"], state.obs_stats, state.hp.noise_std)

    def policy(self, params: DDPGPolicyParams, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """obs [*obs_shape] -> action [action_dim]: the actor's, plus Gaussian noise unless deterministic."""
        action = self.actor_net.apply(params.actor, self.normalize(params.obs_stats, obs))
        if deterministic:
            return action
        return jnp.clip(action + params.noise_std * jax.random.normal(key, action.shape), -1.0, 1.0)
