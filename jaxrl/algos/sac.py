"""Soft Actor-Critic (Haarnoja et al., 2018), with automatic entropy tuning.

A tanh-squashed Gaussian actor, twin Q critics with Polyak-averaged targets
and a learned temperature alpha that drives the policy's entropy towards a
target (-action_dim by default). With `noise: ou` the behaviour policy draws
its Gaussian noise from a per-env unit-variance Ornstein-Uhlenbeck process
instead of independently each step: every action still has the policy's
distribution, but consecutive actions are correlated, which is what finds the
goal of MountainCarContinuous. Learning is unchanged (the losses sample fresh
noise).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.algos.base import check_positive, static
from jaxrl.algos.common import adam_state
from jaxrl.algos.losses import sac_actor_loss, sac_critic_loss, temperature_loss
from jaxrl.algos.offpolicy import Learner, OffPolicy, OffPolicyConfig, OffPolicyState, PolicyParams
from jaxrl.algos.replay import Transition
from jaxrl.networks import QEnsemble, TanhGaussianPolicy, tanh_gaussian


@struct.dataclass
class SACConfig(OffPolicyConfig):
    """SAC settings: off-policy ones plus the temperature and the actor's initial std."""

    log_std_init: float = static(0.0)  # initial log std of the pre-tanh Gaussian
    autotune: bool = static(True)  # learn alpha; otherwise keep it at init_alpha
    target_entropy: float | None = static(None)  # None: -action_dim
    init_alpha: float = 1.0
    alpha_lr: float = 3e-4

    def validate(self, total_timesteps: int) -> None:
        """OffPolicyConfig's checks plus the temperature's."""
        super().validate(total_timesteps)
        check_positive(self, "init_alpha", "alpha_lr")

    def unused(self) -> dict[str, str]:
        """OffPolicyConfig's, plus the temperature's step size without autotune."""
        unused = super().unused()
        if not self.autotune:
            unused["alpha_lr"] = "it is the step size of the learned temperature, and algo.autotune=false keeps alpha at algo.init_alpha"
        return unused


class SAC(OffPolicy):
    """SAC with twin critics and automatic entropy tuning."""

    config_cls = SACConfig

    def __init__(self, env, config: SACConfig, total_timesteps: int, sized_for: int | None = None):
        super().__init__(env, config, total_timesteps, sized_for)
        action_dim = env.spec.action_dim
        self.actor_net = TanhGaussianPolicy(action_dim, config.hidden, config.activation, config.log_std_init, conv=self.conv)
        self.critic_net = QEnsemble(2, config.hidden, config.activation, conv=self.conv)
        self.target_entropy = -float(action_dim) if config.target_entropy is None else config.target_entropy

    def init_learner(self, key: jax.Array, hp: SACConfig) -> Learner:
        """Actor, twin critics, log alpha = log init_alpha; a target copy of the critics only."""
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(self.env.spec.obs_shape, jnp.float32)
        action = jnp.zeros((self.env.spec.action_dim,), jnp.float32)
        params = {
            "actor": self.actor_net.init(k_actor, obs),
            "critic": self.critic_net.init(k_critic, obs, action),
            "log_alpha": jnp.log(hp.init_alpha),
        }
        return Learner(
            params=params,
            target={"critic": params["critic"]},
            opt_state={k: adam_state(v) for k, v in params.items()},
        )

    def explore(self, params, obs, noise, hp):
        """tanh(mean + std x noise): the policy's own sample when noise is white, [N, action_dim]."""
        mean, log_std = self.actor_net.apply(params["actor"], obs)
        return jnp.tanh(mean + jnp.exp(log_std) * noise)

    def critic_loss(self, critic: Any, learner: Learner, batch: Transition, key: jax.Array, hp):
        """`losses.sac_critic_loss`, bootstrapping at an action the current actor samples at s'."""
        dist = tanh_gaussian(*self.actor_net.apply(learner.params["actor"], batch.next_obs))
        next_action, next_log_prob = dist.sample_and_log_prob(seed=key)
        next_q = self.critic_net.apply(learner.target["critic"], batch.next_obs, next_action)
        q = self.critic_net.apply(critic, batch.obs, batch.action)
        alpha = jnp.exp(learner.params["log_alpha"])
        return sac_critic_loss(q, batch.reward, batch.terminated, next_q, next_log_prob, alpha, hp.gamma)

    def actor_loss(self, actor: Any, learner: Learner, batch: Transition, key: jax.Array, hp):
        """`losses.sac_actor_loss` of a reparameterised sample of the policy, through the online critics."""
        action, log_prob = tanh_gaussian(*self.actor_net.apply(actor, batch.obs)).sample_and_log_prob(seed=key)
        q = self.critic_net.apply(learner.params["critic"], batch.obs, action)
        return sac_actor_loss(log_prob, q, jnp.exp(learner.params["log_alpha"]))

    def temperature_step(self, learner: Learner, entropy: jax.Array, hp) -> Learner:
        """One Adam step on log alpha given the policy's entropy estimate []."""
        grads = jax.grad(temperature_loss)(learner.params["log_alpha"], entropy, self.target_entropy)
        return self.apply_grads(learner, "log_alpha", grads, hp.alpha_lr)

    def actor_step(self, learner: Learner, batch: Transition, key: jax.Array, hp) -> tuple[Learner, dict]:
        """An actor step, then (with autotune) a temperature step on the same sample's entropy."""
        learner, metrics = super().actor_step(learner, batch, key, hp)
        if self.config.autotune:
            learner = self.temperature_step(learner, metrics["loss/entropy"], hp)
        return learner, metrics

    def update(self, state: OffPolicyState) -> tuple[OffPolicyState, dict[str, jax.Array]]:
        """OffPolicy's update, reporting the temperature it ends with (also
        during warm-up, where the learning metrics are zeros)."""
        state, metrics = super().update(state)
        return state, {**metrics, "sac/alpha": jnp.exp(state.learner.params["log_alpha"])}

    def policy(self, params: PolicyParams, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """obs [*obs_shape] -> action [action_dim]: tanh of the mean, or a sample."""
        mean, log_std = self.actor_net.apply(params.actor, self.normalize(params.obs_stats, obs))
        if deterministic:
            return jnp.tanh(mean)
        return tanh_gaussian(mean, log_std).sample(seed=key)
