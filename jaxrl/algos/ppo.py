"""Proximal Policy Optimization (Schulman et al., 2017), clipped surrogate."""

from __future__ import annotations

import jax
from flax import struct

from jaxrl.algos.base import static
from jaxrl.algos.common import clipped_adam_step, epochs_of_minibatches, flatten_steps, linear_decay
from jaxrl.algos.losses import normalize_advantage, ppo_loss
from jaxrl.algos.onpolicy import Batch, OnPolicy, OnPolicyConfig, OnPolicyState, check_minibatches
from jaxrl.errors import ConfigError
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


class PPO(OnPolicy):
    """PPO with GAE, epochs x minibatches, optional value clipping and lr annealing."""

    config_cls = PPOConfig

    def __init__(self, env, config: PPOConfig, total_timesteps: int, sized_for: int | None = None):
        super().__init__(env, config, total_timesteps, sized_for)
        self.minibatch_size = self.steps_per_update // config.num_minibatches

    def loss(self, params, batch: Batch, hp: PPOConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`losses.ppo_loss` of params {"actor", "critic"} on a minibatch ([N] leaves),
        with the advantages normalised within the minibatch."""
        dist = policy_distribution(self.env.spec.discrete, self.actor_net.apply(params["actor"], batch.obs))
        return ppo_loss(
            log_prob=dist.log_prob(batch.action),
            entropy=dist.entropy(),
            value=self.critic_net.apply(params["critic"], batch.obs),
            old_log_prob=batch.log_prob,
            old_value=batch.value,
            advantage=normalize_advantage(batch.advantage),
            target=batch.target,
            clip_eps=hp.clip_eps,
            vf_coef=hp.vf_coef,
            ent_coef=hp.ent_coef,
            clip_value=self.config.clip_value,
        )

    def learn(self, state: OnPolicyState, batch: Batch, key: jax.Array) -> tuple[OnPolicyState, dict[str, jax.Array]]:
        """`num_epochs` passes of `num_minibatches` Adam steps over the rollout."""
        cfg, hp = self.config, state.hp
        flat = flatten_steps(batch)
        lr = linear_decay(hp.lr, state.update_idx, self.num_updates, cfg.anneal_lr)
        grad_fn = jax.grad(self.loss, has_aux=True)

        def minibatch_step(carry, mb):
            params, opt_state = carry
            grads, metrics = grad_fn(params, mb, hp)
            params, opt_state, grad_norm = clipped_adam_step(params, opt_state, grads, lr, hp.max_grad_norm)
            return (params, opt_state), {**metrics, "opt/grad_norm": grad_norm}

        params = {"actor": state.actor, "critic": state.critic}
        (params, opt_state), metrics = epochs_of_minibatches(
            minibatch_step, (params, state.opt_state), flat, key, cfg.num_epochs, cfg.num_minibatches
        )
        state = state.replace(actor=params["actor"], critic=params["critic"], opt_state=opt_state)
        return state, {**metrics, "opt/lr": lr}
