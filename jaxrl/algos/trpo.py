"""Trust Region Policy Optimization (Schulman et al., 2015), with GAE.

The actor takes one natural-gradient step per rollout: conjugate gradient on
Fisher-vector products gives the search direction, it is scaled to the edge of
the trust region KL(pi_old || pi_new) <= max_kl, and a backtracking line search
shrinks it until the step both keeps that KL bound and improves the surrogate.
The actor is updated outside optax; the critic is fitted separately by Adam
over several epochs of minibatches, so the optimiser state holds only the
critic's Adam state.
"""

from __future__ import annotations

from collections.abc import Callable

import distrax
import jax
import jax.numpy as jnp
from flax import struct
from jax.flatten_util import ravel_pytree

from jaxrl.algos.base import check_positive, static
from jaxrl.algos.common import (
    adam_state,
    clipped_adam_step,
    epochs_of_minibatches,
    flatten_steps,
    linear_decay,
)
from jaxrl.algos.losses import normalize_advantage, trpo_surrogate, value_loss
from jaxrl.algos.natural_gradient import conjugate_gradient, fisher_vector_product
from jaxrl.algos.onpolicy import Batch, OnPolicy, OnPolicyConfig, OnPolicyState, check_minibatches
from jaxrl.errors import ConfigError
from jaxrl.networks import policy_distribution


@struct.dataclass
class TRPOConfig(OnPolicyConfig):
    """TRPO settings: on-policy ones (`lr` and `max_grad_norm` are the critic's)
    plus the trust region, conjugate gradient, line search and critic fitting."""

    hidden: tuple[int, ...] = static((64, 64))
    cg_iters: int = static(10)
    line_search_steps: int = static(10)
    vf_epochs: int = static(5)
    vf_minibatches: int = static(32)
    lr: float = 1e-3
    max_kl: float = 0.01
    cg_damping: float = 0.1
    backtrack_coef: float = 0.8

    def validate(self, total_timesteps: int) -> None:
        """OnPolicyConfig's checks plus the trust region, solver and critic settings."""
        super().validate(total_timesteps)
        check_positive(self, "cg_iters", "line_search_steps", "vf_epochs")
        check_minibatches("vf_minibatches", self.vf_minibatches, self.num_envs * self.rollout_length)
        if self.max_kl <= 0:
            raise ConfigError(f"algo.max_kl must be positive, got {self.max_kl}")
        if self.cg_damping < 0:
            raise ConfigError(f"algo.cg_damping must be >= 0, got {self.cg_damping}")
        if not 0.0 < self.backtrack_coef < 1.0:
            raise ConfigError(f"algo.backtrack_coef must be in (0, 1), got {self.backtrack_coef}")


def trpo_policy_step(
    dist_fn: Callable[[object, jax.Array], distrax.Distribution],
    actor,
    obs: jax.Array,
    action: jax.Array,
    advantage: jax.Array,
    hp: TRPOConfig,
    cg_iters: int,
    line_search_steps: int,
):
    """One trust-region step of the actor on a batch of N samples.

    dist_fn(actor, obs [N, *obs_shape]) -> the policy's distribution over the
    N actions. action [N] or [N, action_dim]; advantage [N] (normalised here).
    hp: TRPO's hyperparameters; max_kl, cg_damping and backtrack_coef ([] each) are used.
    Maximises the importance-sampled surrogate mean(pi/pi_old * A) subject to
    mean KL(pi_old || pi) <= max_kl. Candidates full_step * backtrack_coef^i,
    i = 0 .. line_search_steps - 1, are tried in turn; the first that keeps
    the KL bound and improves the surrogate is taken, and if none does the
    actor is left unchanged.
    Returns (new actor, metrics of [] scalars).
    """
    flat, unravel = ravel_pytree(actor)
    # Derivatives are taken in x only, so pi_old stays fixed without stop_gradient.
    old_dist = dist_fn(actor, obs)
    old_log_prob = old_dist.log_prob(action)
    adv = normalize_advantage(advantage)

    def surrogate_and_kl(x):
        dist = dist_fn(unravel(x), obs)
        return trpo_surrogate(dist.log_prob(action), old_log_prob, adv), jnp.mean(old_dist.kl_divergence(dist))

    def kl(x):
        return surrogate_and_kl(x)[1]

    surrogate_old, grad = jax.value_and_grad(lambda x: surrogate_and_kl(x)[0])(flat)
    fvp = fisher_vector_product(kl, flat, hp.cg_damping)
    direction = conjugate_gradient(fvp, grad, cg_iters)
    # 1/2 s^T F s = max_kl puts the quadratic model of the KL on the trust region's edge.
    curvature = jnp.vdot(direction, fvp(direction))
    full_step = jnp.sqrt(2.0 * hp.max_kl / jnp.maximum(curvature, 1e-12)) * direction

    def cond(carry):
        i, accepted, *_ = carry
        return (~accepted) & (i < line_search_steps)

    def body(carry):
        i, _, x, _, _ = carry
        candidate = flat + hp.backtrack_coef ** i.astype(jnp.float32) * full_step
        surrogate, step_kl = surrogate_and_kl(candidate)
        improvement = surrogate - surrogate_old
        accepted = (step_kl <= hp.max_kl) & (improvement > 0.0)
        return i + 1, accepted, jnp.where(accepted, candidate, x), step_kl, improvement

    zero = jnp.zeros((), jnp.float32)
    tries, accepted, new_flat, step_kl, improvement = jax.lax.while_loop(
        cond, body, (jnp.zeros((), jnp.int32), jnp.zeros((), bool), flat, zero, zero)
    )
    return unravel(new_flat), {
        "trpo/kl": jnp.where(accepted, step_kl, 0.0),
        "trpo/improvement": jnp.where(accepted, improvement, 0.0),
        "trpo/expected_improvement": jnp.vdot(grad, full_step),
        "trpo/accepted": accepted.astype(jnp.float32),
        "trpo/line_search_tries": tries.astype(jnp.float32),
        "loss/entropy": old_dist.entropy().mean(),
    }


class TRPO(OnPolicy):
    """TRPO: a natural-gradient actor step in a KL trust region; critic fitted by Adam."""

    config_cls = TRPOConfig

    def init_opt_state(self, actor, critic):
        """Only the critic has an optimiser; the actor moves by the natural gradient."""
        return adam_state(critic)

    def learn(self, state: OnPolicyState, batch: Batch, key: jax.Array) -> tuple[OnPolicyState, dict[str, jax.Array]]:
        """A trust-region step of the actor, then `vf_epochs` x `vf_minibatches` Adam steps of the critic."""
        cfg, hp = self.config, state.hp
        flat = flatten_steps(batch)
        discrete = self.env.spec.discrete

        def dist_fn(actor, obs):
            return policy_distribution(discrete, self.actor_net.apply(actor, obs))

        actor, policy_metrics = trpo_policy_step(
            dist_fn, state.actor, flat.obs, flat.action, flat.advantage, hp, cfg.cg_iters, cfg.line_search_steps
        )

        lr = linear_decay(hp.lr, state.update_idx, self.num_updates, cfg.anneal_lr)

        def critic_loss(critic, mb):
            return value_loss(self.critic_net.apply(critic, mb.obs), mb.target)

        def minibatch_step(carry, mb):
            critic, opt_state = carry
            loss, grads = jax.value_and_grad(critic_loss)(critic, mb)
            critic, opt_state, grad_norm = clipped_adam_step(critic, opt_state, grads, lr, hp.max_grad_norm)
            return (critic, opt_state), {"loss/value": loss, "opt/grad_norm": grad_norm}

        (critic, opt_state), value_metrics = epochs_of_minibatches(
            minibatch_step, (state.critic, state.opt_state), flat, key, cfg.vf_epochs, cfg.vf_minibatches
        )
        state = state.replace(actor=actor, critic=critic, opt_state=opt_state)
        return state, {**policy_metrics, **value_metrics, "opt/lr": lr}
