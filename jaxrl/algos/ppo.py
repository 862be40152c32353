"""Proximal Policy Optimization (Schulman et al., 2017), clipped surrogate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.errors import ConfigError
from jaxrl.algos.base import static
from jaxrl.algos.common import clipped_adam_step, epochs_of_minibatches, flatten_steps, linear_decay
from jaxrl.algos.onpolicy import Batch, OnPolicy, OnPolicyConfig, OnPolicyState, check_minibatches
from jaxrl.networks import policy_distribution


@struct.dataclass
class PPOConfig(OnPolicyConfig):
    """PPO settings: on-policy ones plus epochs, minibatches and the clipping.

    The defaults are configs/algo/ppo.yaml's (a test keeps them equal), tuned
    for MountainCarContinuous: gamma 0.9999 and an entropy bonus (see the YAML).
    """

    num_epochs: int = static(4)
    num_minibatches: int = static(32)
    clip_value: bool = static(True)
    gamma: float = 0.9999
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5

    def validate(self, total_timesteps: int) -> None:
        """OnPolicyConfig's checks plus epochs, minibatches and the clip range."""
        super().validate(total_timesteps)
        if self.num_epochs <= 0:
            raise ConfigError(f"algo.num_epochs must be positive, got {self.num_epochs}")
        check_minibatches("num_minibatches", self.num_minibatches, self.num_envs * self.rollout_length)
        if self.clip_eps <= 0:
            raise ConfigError(f"algo.clip_eps must be positive, got {self.clip_eps}")


def ppo_loss(params, actor_net, critic_net, discrete: bool, batch: Batch, hp, clip_value: bool):
    """PPO's loss on a minibatch ([N] leaves): clipped surrogate + value + entropy.

    Advantages are normalised within the minibatch. Returns (loss, metrics).
    """
    dist = policy_distribution(discrete, actor_net.apply(params["actor"], batch.obs))
    log_prob = dist.log_prob(batch.action)
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    adv = (batch.advantage - batch.advantage.mean()) / (batch.advantage.std() + 1e-8)
    clip_eps = hp.clip_eps
    policy_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv).mean()

    value = critic_net.apply(params["critic"], batch.obs)
    value_loss = (value - batch.target) ** 2
    if clip_value:
        clipped = batch.value + jnp.clip(value - batch.value, -clip_eps, clip_eps)
        value_loss = jnp.maximum(value_loss, (clipped - batch.target) ** 2)
    value_loss = 0.5 * value_loss.mean()

    entropy = dist.entropy().mean()
    loss = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy
    return loss, {
        "loss/policy": policy_loss,
        "loss/value": value_loss,
        "loss/entropy": entropy,
        # the low-variance KL estimator (r - 1) - log r
        "loss/approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "loss/clip_frac": (jnp.abs(ratio - 1.0) > clip_eps).mean(),
    }


class PPO(OnPolicy):
    """PPO with GAE, epochs x minibatches, optional value clipping and lr annealing."""

    config_cls = PPOConfig

    def __init__(self, env, config: PPOConfig, total_timesteps: int):
        super().__init__(env, config, total_timesteps)
        self.minibatch_size = self.steps_per_update // config.num_minibatches

    def learn(self, state: OnPolicyState, batch: Batch, key: jax.Array) -> tuple[OnPolicyState, dict[str, jax.Array]]:
        """`num_epochs` passes of `num_minibatches` Adam steps over the rollout."""
        cfg, hp = self.config, state.hp
        flat = flatten_steps(batch)
        lr = linear_decay(hp.lr, state.update_idx, self.num_updates, cfg.anneal_lr)
        grad_fn = jax.grad(ppo_loss, has_aux=True)

        def minibatch_step(carry, mb):
            params, opt_state = carry
            grads, metrics = grad_fn(params, self.actor_net, self.critic_net, self.env.spec.discrete, mb, hp, cfg.clip_value)
            params, opt_state, grad_norm = clipped_adam_step(params, opt_state, grads, lr, hp.max_grad_norm)
            return (params, opt_state), {**metrics, "opt/grad_norm": grad_norm}

        params = {"actor": state.actor, "critic": state.critic}
        (params, opt_state), metrics = epochs_of_minibatches(
            minibatch_step, (params, state.opt_state), flat, key, cfg.num_epochs, cfg.num_minibatches
        )
        state = state.replace(actor=params["actor"], critic=params["critic"], opt_state=opt_state)
        return state, {**metrics, "opt/lr": lr}
