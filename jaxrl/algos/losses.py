"""Every algorithm's loss, as pure functions of arrays and scalars.

The algorithms apply their networks and hand the outputs here, so the math of
each loss lives in one place and is tested with hand-computed numbers
(tests/test_losses.py). Shapes: on-policy losses take [N] (a minibatch) or
[T, B] (a whole rollout; the means are over every element); off-policy ones
take [B] per-transition arrays and [B, n_critics] Q values from a
`QEnsemble`. A loss that a gradient step logs returns (loss [], metrics),
with the metric names the training logs use; the terms it is built from,
and TRPO's surrogate and SAC's temperature loss, return the array alone.

On-policy: `ppo_loss` (clipped surrogate, optionally clipped value, entropy),
`a2c_loss` (policy gradient, value, entropy), `trpo_surrogate` and the
critics' `value_loss`. Off-policy: `td_target`, `ddpg_critic_loss` /
`ddpg_actor_loss` (also TD3's), `sac_critic_loss` / `sac_actor_loss` and
SAC's `temperature_loss`. Advantage normalisation, target actions and
sampling stay with the algorithms, which decide when they apply.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# ---- on-policy ------------------------------------------------------------------------


def normalize_advantage(advantage: jax.Array) -> jax.Array:
    """Advantages [N] or [T, B] shifted and scaled to mean 0 and std 1 over all elements."""
    return (advantage - advantage.mean()) / (advantage.std() + 1e-8)


def policy_gradient_loss(log_prob: jax.Array, advantage: jax.Array) -> jax.Array:
    """-mean(log pi(a|s) * A): log_prob and advantage [N] or [T, B] -> [].

    The advantage comes from the rollout, not from the params being
    differentiated, so it is a constant of the gradient without stop_gradient.
    """
    return -jnp.mean(log_prob * advantage)


def ppo_policy_loss(
    log_prob: jax.Array, old_log_prob: jax.Array, advantage: jax.Array, clip_eps: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO's clipped surrogate, -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)).

    log_prob, old_log_prob (the behaviour policy's), advantage: [N]; clip_eps: [].
    r = pi / pi_old. The min makes the loss pessimistic: once r has moved past
    1 + eps (A > 0) or 1 - eps (A < 0) the gradient is zero, so one rollout
    cannot push the policy far. Returns (loss [], {"loss/approx_kl",
    "loss/clip_frac"}).
    """
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    loss = -jnp.minimum(ratio * advantage, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage).mean()
    return loss, {
        # the low-variance KL estimator (r - 1) - log r
        "loss/approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "loss/clip_frac": (jnp.abs(ratio - 1.0) > clip_eps).mean(),
    }


def value_loss(
    value: jax.Array, target: jax.Array, old_value: jax.Array | None = None, clip_eps: jax.Array | None = None
) -> jax.Array:
    """0.5 mean((V - target)^2): value and target [N] or [T, B] -> [].

    With `old_value` (the rollout's values, same shape) and `clip_eps` [], PPO's
    clipped form: the larger of the squared errors of V and of
    old_value + clip(V - old_value, -eps, eps), so the critic gains nothing by
    moving further than eps from the values the advantages were computed with.
    """
    squared_error = (value - target) ** 2
    if old_value is not None:
        clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
        squared_error = jnp.maximum(squared_error, (clipped - target) ** 2)
    return 0.5 * squared_error.mean()


def _actor_critic_loss(
    policy_loss: jax.Array,
    value_loss: jax.Array,
    entropy: jax.Array,
    vf_coef: jax.Array,
    ent_coef: jax.Array,
    metrics: dict[str, jax.Array],
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """policy + vf_coef * value - ent_coef * entropy (all []), with the metrics PPO and A2C share."""
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    return loss, {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": entropy, **metrics}


def ppo_loss(
    log_prob: jax.Array,
    entropy: jax.Array,
    value: jax.Array,
    old_log_prob: jax.Array,
    old_value: jax.Array,
    advantage: jax.Array,
    target: jax.Array,
    clip_eps: jax.Array,
    vf_coef: jax.Array,
    ent_coef: jax.Array,
    clip_value: bool,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO's loss on a minibatch: clipped surrogate + vf_coef * value - ent_coef * entropy.

    The current policy's log_prob and entropy and the critic's value, then the
    rollout's old_log_prob, old_value, advantage and value target: all [N].
    clip_eps, vf_coef, ent_coef: []. clip_value: clip the value loss with the
    same clip_eps (see `value_loss`). The advantage is used as given (PPO
    normalises it per minibatch before). Returns (loss [], {"loss/policy",
    "loss/value", "loss/entropy", "loss/approx_kl", "loss/clip_frac"}).
    """
    policy_loss, metrics = ppo_policy_loss(log_prob, old_log_prob, advantage, clip_eps)
    critic_loss = value_loss(value, target, old_value if clip_value else None, clip_eps)
    return _actor_critic_loss(policy_loss, critic_loss, entropy.mean(), vf_coef, ent_coef, metrics)


def a2c_loss(
    log_prob: jax.Array,
    entropy: jax.Array,
    value: jax.Array,
    advantage: jax.Array,
    target: jax.Array,
    vf_coef: jax.Array,
    ent_coef: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A2C's loss on a rollout: policy gradient + vf_coef * value - ent_coef * entropy.

    log_prob, entropy, value (current params), advantage, target (the
    rollout's): all [T, B]; vf_coef, ent_coef: []. Returns (loss [],
    {"loss/policy", "loss/value", "loss/entropy"}).
    """
    policy_loss = policy_gradient_loss(log_prob, advantage)
    return _actor_critic_loss(policy_loss, value_loss(value, target), entropy.mean(), vf_coef, ent_coef, {})


def trpo_surrogate(log_prob: jax.Array, old_log_prob: jax.Array, advantage: jax.Array) -> jax.Array:
    """TRPO's importance-sampled surrogate mean(pi/pi_old * A), to be maximised.

    log_prob, old_log_prob, advantage: [N] -> []. Its gradient at pi = pi_old
    is the policy gradient; TRPO maximises it inside a KL trust region.
    """
    return jnp.mean(jnp.exp(log_prob - old_log_prob) * advantage)


# ---- off-policy -----------------------------------------------------------------------


def td_target(reward: jax.Array, terminated: jax.Array, next_value: jax.Array, gamma: jax.Array) -> jax.Array:
    """reward + gamma * next_value, without bootstrapping past a true terminal state.

    All [B] (gamma []). A truncated transition has terminated = 0 and
    next_value computed at the pre-reset observation, so a time limit
    bootstraps.
    """
    return reward + gamma * (1.0 - terminated) * next_value


def _td_loss(
    q: jax.Array, reward: jax.Array, terminated: jax.Array, next_value: jax.Array, gamma: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sum over critics of the mean squared TD error against one shared target.

    q: [B, n_critics]; reward, terminated, next_value: [B]; gamma: [].
    The target is a constant: only the online critics regress onto it.
    """
    target = jax.lax.stop_gradient(td_target(reward, terminated, next_value, gamma))
    loss = ((q - target[:, None]) ** 2).mean(0).sum()
    return loss, {"loss/critic": loss, "q/mean": q.mean(), "q/target": target.mean()}


def ddpg_critic_loss(
    q: jax.Array, reward: jax.Array, terminated: jax.Array, next_q: jax.Array, gamma: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DDPG's (and TD3's) critic loss: each critic's squared TD error, summed over critics.

    q: [B, n_critics], the online critics at the batch's (s, a). next_q:
    [B, n_critics], the target critics at (s', target action). The target
    bootstraps from the minimum over target critics (TD3's clipped double Q;
    with one critic, plain DDPG). reward, terminated: [B]; gamma: [].
    Returns (loss [], {"loss/critic", "q/mean", "q/target"}).
    """
    return _td_loss(q, reward, terminated, next_q.min(-1), gamma)


def ddpg_actor_loss(q: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """-mean Q_1(s, actor(s)): the deterministic policy gradient through the first critic.

    q: [B, n_critics], the online critics at the actor's actions (only the
    first is used, as in TD3). Returns (loss [], {"loss/actor"}).
    """
    loss = -q[:, 0].mean()
    return loss, {"loss/actor": loss}


def sac_critic_loss(
    q: jax.Array,
    reward: jax.Array,
    terminated: jax.Array,
    next_q: jax.Array,
    next_log_prob: jax.Array,
    alpha: jax.Array,
    gamma: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SAC's critic loss: each critic's squared soft TD error, summed over critics.

    q: [B, n_critics], the online critics at (s, a). next_q: [B, n_critics],
    the target critics at (s', a'), a' ~ pi(s') with log density
    next_log_prob [B]. The soft next value is min_i next_q_i - alpha log pi(a'|s').
    reward, terminated: [B]; alpha, gamma: []. Returns (loss [],
    {"loss/critic", "q/mean", "q/target"}).
    """
    return _td_loss(q, reward, terminated, next_q.min(-1) - alpha * next_log_prob, gamma)


def sac_actor_loss(log_prob: jax.Array, q: jax.Array, alpha: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SAC's actor loss, mean(alpha log pi(a|s) - min_i Q_i(s, a)).

    log_prob: [B], of a reparameterised sample a ~ pi(s); q: [B, n_critics],
    the online critics at those actions; alpha: []. Returns (loss [],
    {"loss/actor", "loss/entropy"}), the entropy estimate being -mean log pi.
    """
    loss = (alpha * log_prob - q.min(-1)).mean()
    return loss, {"loss/actor": loss, "loss/entropy": -log_prob.mean()}


def temperature_loss(log_alpha: jax.Array, entropy: jax.Array, target_entropy: float) -> jax.Array:
    """log_alpha * (entropy - target_entropy), all [].

    Its gradient is entropy - target: descending it raises alpha (more entropy
    bonus) while the policy's entropy is below the target and lowers it above.
    `entropy` is the batch mean of -log pi(a|s), treated as a constant.
    """
    return log_alpha * jax.lax.stop_gradient(entropy - target_entropy)
