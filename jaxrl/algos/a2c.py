"""Advantage actor-critic (A2C): the synchronous, batched A3C of Mnih et al. (2016).

Each rollout of `num_envs` x `rollout_length` steps gives exactly one gradient
step on policy-gradient + value + entropy loss. Advantages are GAE(lambda):
gae_lambda = 1 gives the classic n-step returns with n = rollout_length
(bootstrapped from the value of the last state).

Optimiser: Adam, through the same `clipped_adam_step` as PPO. A3C, OpenAI
baselines and SB3 used RMSprop (decay 0.99), which has no bias correction, so
its first steps depend on where its second-moment estimate starts: at zero
(PyTorch's, SB3's) they are about 10x too large, at one (TensorFlow 1's,
baselines') they are plain gradient steps. Adam's bias-corrected moments are
well scaled from the first update, and one optimiser keeps the traced learning
rate and the joint (actor, critic) optimiser state of the base class.
"""

from __future__ import annotations

import jax
from flax import struct

from jaxrl.algos.base import static
from jaxrl.algos.common import clipped_adam_step, linear_decay
from jaxrl.algos.losses import a2c_loss, normalize_advantage
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


class A2C(OnPolicy):
    """A2C: one clipped Adam step per rollout on the joint actor-critic loss."""

    config_cls = A2CConfig

    def loss(self, params, batch: Batch, hp: A2CConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`losses.a2c_loss` of params {"actor", "critic"} on a rollout ([T, B] leaves),
        with the advantages normalised over the rollout if `normalize_advantage`."""
        dist = policy_distribution(self.env.spec.discrete, self.actor_net.apply(params["actor"], batch.obs))
        advantage = normalize_advantage(batch.advantage) if self.config.normalize_advantage else batch.advantage
        return a2c_loss(
            log_prob=dist.log_prob(batch.action),
            entropy=dist.entropy(),
            value=self.critic_net.apply(params["critic"], batch.obs),
            advantage=advantage,
            target=batch.target,
            vf_coef=hp.vf_coef,
            ent_coef=hp.ent_coef,
        )

    def learn(self, state: OnPolicyState, batch: Batch, key: jax.Array) -> tuple[OnPolicyState, dict[str, jax.Array]]:
        """One gradient step on the whole rollout (`key` is unused: nothing is sampled)."""
        cfg, hp = self.config, state.hp
        lr = linear_decay(hp.lr, state.update_idx, self.num_updates, cfg.anneal_lr)
        params = {"actor": state.actor, "critic": state.critic}
        grads, metrics = jax.grad(self.loss, has_aux=True)(params, batch, hp)
        params, opt_state, grad_norm = clipped_adam_step(params, state.opt_state, grads, lr, hp.max_grad_norm)
        state = state.replace(actor=params["actor"], critic=params["critic"], opt_state=opt_state)
        return state, {**metrics, "opt/grad_norm": grad_norm, "opt/lr": lr}
