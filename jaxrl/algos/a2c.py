"""Advantage actor-critic (A2C): the synchronous, batched A3C of Mnih et al. (2016).

Each rollout of `num_envs` x `rollout_length` steps gives exactly one gradient
step on policy-gradient + value + entropy loss. Advantages are GAE(lambda):
gae_lambda = 1 gives the classic n-step returns with n = rollout_length
(bootstrapped from the value of the last state).

Optimiser: Adam, through the same `clipped_adam_step` as PPO. A3C and OpenAI
baselines used RMSprop; with one step per rollout its second-moment estimate
starts at zero and, without bias correction, makes the first steps about 10x
too large (decay 0.99), whereas Adam's bias-corrected moments are well scaled
from the first update, and one optimiser keeps the traced learning rate and
the joint (actor, critic) optimiser state of the base class.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.algos.base import static
from jaxrl.algos.common import clipped_adam_step, linear_decay
from jaxrl.algos.onpolicy import Batch, OnPolicy, OnPolicyConfig, OnPolicyState
from jaxrl.errors import ConfigError
from jaxrl.networks import policy_distribution


@struct.dataclass
class A2CConfig(OnPolicyConfig):
    """A2C settings: short n-step rollouts and one Adam step on each."""

    hidden: tuple[int, ...] = static((64, 64))
    rollout_length: int = static(5)
    normalize_advantage: bool = static(False)
    lr: float = 7e-4
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    vf_coef: float = 0.5

    def validate(self, total_timesteps: int) -> None:
        """OnPolicyConfig's checks plus non-negative loss coefficients."""
        super().validate(total_timesteps)
        for name in ("ent_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ConfigError(f"algo.{name} must be >= 0, got {getattr(self, name)}")


def a2c_loss(params, actor_net, critic_net, discrete: bool, batch: Batch, hp, normalize_advantage: bool):
    """A2C's loss on a rollout (leaves [T, B, ...]): policy gradient + value + entropy.

    params: {"actor", "critic"}. hp needs vf_coef and ent_coef ([] each).
    The policy term is -mean(log pi(a|s) * A) with A held fixed (it comes
    from the rollout, not from these params). Returns (loss [], metrics).
    """
    dist = policy_distribution(discrete, actor_net.apply(params["actor"], batch.obs))
    adv = batch.advantage
    if normalize_advantage:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = -jnp.mean(dist.log_prob(batch.action) * adv)
    value_loss = 0.5 * jnp.mean((critic_net.apply(params["critic"], batch.obs) - batch.target) ** 2)
    entropy = dist.entropy().mean()
    loss = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy
    return loss, {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": entropy}


class A2C(OnPolicy):
    """A2C: one clipped Adam step per rollout on the joint actor-critic loss."""

    config_cls = A2CConfig

    def learn(self, state: OnPolicyState, batch: Batch, key: jax.Array) -> tuple[OnPolicyState, dict[str, jax.Array]]:
        """One gradient step on the whole rollout (`key` is unused: nothing is sampled)."""
        cfg, hp = self.config, state.hp
        lr = linear_decay(hp.lr, state.update_idx, self.num_updates, cfg.anneal_lr)
        params = {"actor": state.actor, "critic": state.critic}
        grads, metrics = jax.grad(a2c_loss, has_aux=True)(
            params, self.actor_net, self.critic_net, self.env.spec.discrete, batch, hp, cfg.normalize_advantage
        )
        params, opt_state, grad_norm = clipped_adam_step(params, state.opt_state, grads, lr, hp.max_grad_norm)
        state = state.replace(actor=params["actor"], critic=params["critic"], opt_state=opt_state)
        return state, {**metrics, "opt/grad_norm": grad_norm, "opt/lr": lr}
