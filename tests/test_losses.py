"""The losses of jaxrl.algos.losses against numbers worked out by hand (in the
comments), in the style of Brax's losses_test.py: tiny arrays, every term and
every clipping branch checked, and gradients where the sign is the point."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.algos.losses import (
    a2c_loss,
    ddpg_actor_loss,
    ddpg_critic_loss,
    normalize_advantage,
    policy_gradient_loss,
    ppo_loss,
    ppo_policy_loss,
    sac_actor_loss,
    sac_critic_loss,
    td_target,
    temperature_loss,
    trpo_surrogate,
    value_loss,
)

# --- on-policy ------------------------------------------------------------------------


def test_normalize_advantage_by_hand():
    # mean 3; population variance (4 + 1 + 0 + 9) / 4 = 3.5
    adv = normalize_advantage(jnp.array([1.0, 2.0, 3.0, 6.0]))
    np.testing.assert_allclose(adv, np.array([-2.0, -1.0, 0.0, 3.0]) / np.sqrt(3.5), rtol=1e-5)


# PPO with clip_eps 0.2: the ratio r = pi / pi_old on both sides of [0.8, 1.2],
# with positive and negative advantages. Each term is min(r A, clip(r) A):
#   r 1.5, A +1: min(1.5, 1.2)   =  1.2  clipped   (too far up for a good action)
#   r 0.5, A +1: min(0.5, 0.8)   =  0.5  unclipped (the pessimistic side is kept)
#   r 1.5, A -1: min(-1.5, -1.2) = -1.5  unclipped
#   r 0.5, A -1: min(-0.5, -0.8) = -0.8  clipped   (too far down for a bad action)
#   r 1.1, A +2: inside the range = 2.2
# loss = -(1.2 + 0.5 - 1.5 - 0.8 + 2.2) / 5 = -0.32
RATIO = np.array([1.5, 0.5, 1.5, 0.5, 1.1], np.float32)
ADVANTAGE = np.array([1.0, 1.0, -1.0, -1.0, 2.0], np.float32)


def test_ppo_policy_loss_clips_on_both_sides_by_hand():
    log_prob, old_log_prob = jnp.log(RATIO), jnp.zeros(5)
    loss, metrics = ppo_policy_loss(log_prob, old_log_prob, ADVANTAGE, 0.2)
    np.testing.assert_allclose(loss, -0.32, rtol=1e-5)
    # |r - 1| > 0.2 for all but r = 1.1
    np.testing.assert_allclose(metrics["loss/clip_frac"], 0.8)
    # (r - 1) - log r: 0.094535 twice (r 1.5), 0.193147 twice (r 0.5), 0.004690 (r 1.1)
    np.testing.assert_allclose(metrics["loss/approx_kl"], (2 * 0.094535 + 2 * 0.193147 + 0.004690) / 5, rtol=1e-4)


def test_ppo_policy_loss_gradient_vanishes_where_clipped():
    grad = jax.grad(lambda lp: ppo_policy_loss(lp, jnp.zeros(5), ADVANTAGE, 0.2)[0])(jnp.log(RATIO))
    # d(-r A / 5)/d log pi = -r A / 5 where unclipped; 0 where the clip is the min
    np.testing.assert_allclose(grad, [0.0, -0.5 / 5, 1.5 / 5, 0.0, -2.2 / 5], rtol=1e-5, atol=1e-7)


def test_value_loss_unclipped_by_hand():
    # squared errors (1 - 0)^2 = 1 and (2 - 4)^2 = 4: 0.5 * 2.5
    np.testing.assert_allclose(value_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0])), 1.25)


def test_value_loss_clipped_by_hand():
    value, old_value, target = jnp.array([1.0, 3.9]), jnp.array([0.5, 2.5]), jnp.array([0.0, 4.0])
    # clipped values: 0.5 + clip(0.5) = 0.7 and 2.5 + clip(1.4) = 2.7 (eps 0.2)
    # sample 0 moved away from its target: max(1^2, 0.7^2) = 1, the unclipped error
    # sample 1 jumped close to its target: max(0.1^2, 1.3^2) = 1.69, the clipped one
    loss, grad = jax.value_and_grad(value_loss)(value, target, old_value, 0.2)
    np.testing.assert_allclose(loss, 0.5 * (1.0 + 1.69) / 2, rtol=1e-5)
    # d/dV 0.5 mean((V - t)^2) = (V - t) / 2 for sample 0; 0 past the clip
    np.testing.assert_allclose(grad, [0.5, 0.0], atol=1e-7)


def test_ppo_loss_adds_the_terms_with_their_coefficients():
    # r = 1 everywhere: policy -mean(A) = -mean(2, 0) = -1; nothing clipped
    # value 0.5 * mean((1 - 0)^2, (3 - 3)^2) = 0.25; the old values equal the new ones
    # entropy mean(0.5, 1.5) = 1; total -1 + 0.5 * 0.25 - 0.01 * 1 = -0.885
    log_prob, value = jnp.array([-1.0, -2.0]), jnp.array([1.0, 3.0])
    loss, metrics = ppo_loss(
        log_prob=log_prob, entropy=jnp.array([0.5, 1.5]), value=value, old_log_prob=log_prob, old_value=value,
        advantage=jnp.array([2.0, 0.0]), target=jnp.array([0.0, 3.0]), clip_eps=0.2, vf_coef=0.5, ent_coef=0.01,
        clip_value=True,
    )
    np.testing.assert_allclose(loss, -0.885, rtol=1e-6)
    expected = {
        "loss/policy": -1.0, "loss/value": 0.25, "loss/entropy": 1.0, "loss/approx_kl": 0.0, "loss/clip_frac": 0.0,
    }
    assert set(metrics) == set(expected)
    for name, want in expected.items():
        np.testing.assert_allclose(metrics[name], want, atol=1e-7, err_msg=name)


def test_a2c_loss_on_a_rollout_by_hand():
    # [T, B] = [2, 2]. log pi * A: -1, -2, -1, 0 -> policy -mean = 1
    # squared value errors 1, 0, 0, 4 -> value 0.5 * 1.25 = 0.625; entropy 1
    # total 1 + 0.5 * 0.625 - 0.1 * 1 = 1.2125
    log_prob = jnp.array([[-1.0, -2.0], [-0.5, -1.0]])
    advantage = jnp.array([[1.0, 1.0], [2.0, 0.0]])

    def loss_fn(lp):
        return a2c_loss(
            log_prob=lp, entropy=jnp.ones((2, 2)), value=jnp.array([[0.0, 1.0], [2.0, 3.0]]), advantage=advantage,
            target=jnp.array([[1.0, 1.0], [2.0, 1.0]]), vf_coef=0.5, ent_coef=0.1,
        )

    (loss, metrics), grad = jax.value_and_grad(loss_fn, has_aux=True)(log_prob)
    np.testing.assert_allclose(loss, 1.2125, rtol=1e-6)
    assert set(metrics) == {"loss/policy", "loss/value", "loss/entropy"}
    for name, want in [("loss/policy", 1.0), ("loss/value", 0.625), ("loss/entropy", 1.0)]:
        np.testing.assert_allclose(metrics[name], want, err_msg=name)
    # -A / 4: descending raises log pi where the advantage is positive
    np.testing.assert_allclose(grad, -advantage / 4)


def test_trpo_surrogate_by_hand_and_its_gradient_is_the_policy_gradient():
    # mean(2 * 1, 0.5 * 2) = 1.5
    advantage = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(trpo_surrogate(jnp.log(jnp.array([2.0, 0.5])), jnp.zeros(2), advantage), 1.5, rtol=1e-6)
    # at pi = pi_old, d surrogate / d log pi = A / N = -d policy_gradient_loss / d log pi
    old_log_prob = jnp.array([-1.0, -0.3])
    surrogate_grad = jax.grad(trpo_surrogate)(old_log_prob, old_log_prob, advantage)
    np.testing.assert_allclose(surrogate_grad, [0.5, 1.0])
    np.testing.assert_allclose(surrogate_grad, -jax.grad(policy_gradient_loss)(old_log_prob, advantage))


# --- off-policy -----------------------------------------------------------------------


def test_td_target_bootstraps_a_truncation_but_not_a_termination():
    # gamma 0.9: a mid-episode step 1 + 0.9 * 10 = 10; a terminal step 1 (no bootstrap);
    # a truncated step (terminated 0, next value at the pre-reset obs) 2 + 0.9 * 5 = 6.5
    target = td_target(jnp.array([1.0, 1.0, 2.0]), jnp.array([0.0, 1.0, 0.0]), jnp.array([10.0, 10.0, 5.0]), 0.9)
    np.testing.assert_allclose(target, [10.0, 1.0, 6.5], rtol=1e-6)


def test_ddpg_critic_loss_bootstraps_from_the_smaller_target_critic():
    # B = 2 transitions, twin critics (TD3), gamma 0.5
    q = jnp.array([[1.0, 2.0], [0.0, 3.0]])
    next_q = jnp.array([[4.0, 6.0], [5.0, 2.0]])  # min over critics: 4, 2
    reward, terminated = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    # targets 1 + 0.5 * 4 = 3 and 0 (terminal: the 2 is ignored)
    # critic 0: mean((1 - 3)^2, (0 - 0)^2) = 2; critic 1: mean((2 - 3)^2, (3 - 0)^2) = 5; summed: 7

    def loss_fn(q, next_q):
        return ddpg_critic_loss(q, reward, terminated, next_q, 0.5)

    (loss, metrics), (grad_q, grad_next_q) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(q, next_q)
    np.testing.assert_allclose(loss, 7.0)
    np.testing.assert_allclose(metrics["loss/critic"], 7.0)
    np.testing.assert_allclose(metrics["q/mean"], 1.5)  # (1 + 2 + 0 + 3) / 4
    np.testing.assert_allclose(metrics["q/target"], 1.5)  # (3 + 0) / 2
    np.testing.assert_allclose(grad_q, [[-2.0, -1.0], [0.0, 3.0]])  # 2 (q - target) / B
    np.testing.assert_array_equal(grad_next_q, 0.0)  # the target is a constant

    # one critic (DDPG): the same targets 3 and 0, loss mean((1 - 3)^2, 0^2) = 2
    single, _ = ddpg_critic_loss(q[:, :1], reward, terminated, jnp.array([[4.0], [5.0]]), 0.5)
    np.testing.assert_allclose(single, 2.0)


def test_ddpg_actor_loss_follows_the_first_critic():
    # -mean(1, 3) = -2; the second critic gets no gradient
    q = jnp.array([[1.0, 5.0], [3.0, -2.0]])
    (loss, metrics), grad = jax.value_and_grad(ddpg_actor_loss, has_aux=True)(q)
    np.testing.assert_allclose(loss, -2.0)
    assert set(metrics) == {"loss/actor"}
    np.testing.assert_allclose(grad, [[-0.5, 0.0], [-0.5, 0.0]])


# SAC with alpha 0.2 on two states: the policy's samples there have log pi -1
# and 0.5, and the (twin) critics give them Q (3, 2) and (1, 4)
SAMPLE_LOG_PROB = jnp.array([-1.0, 0.5])
SAMPLE_Q = jnp.array([[3.0, 2.0], [1.0, 4.0]])


@pytest.mark.parametrize("terminal", [False, True], ids=["bootstrap", "terminal"])
def test_sac_critic_loss_soft_target_by_hand(terminal):
    # the samples are at s' and the critics are the target ones
    # soft next values: min(3, 2) - 0.2 * (-1) = 2.2 and min(1, 4) - 0.2 * 0.5 = 0.9
    # gamma 0.5: targets 0.5 + 0.5 * 2.2 = 1.6, and 1 + 0.5 * 0.9 = 1.45 unless the second
    # transition is terminal, then 1 (neither its next Q nor its entropy term count)
    q = jnp.array([[1.0, 1.5], [2.0, 2.0]])
    terminated = jnp.array([0.0, float(terminal)])
    loss, metrics = sac_critic_loss(q, jnp.array([0.5, 1.0]), terminated, SAMPLE_Q, SAMPLE_LOG_PROB, 0.2, 0.5)
    second = 1.0 if terminal else 1.45
    # critic 0: mean((1 - 1.6)^2, (2 - second)^2); critic 1: mean((1.5 - 1.6)^2, (2 - second)^2)
    # terminal: 0.68 + 0.505 = 1.185; bootstrap: 0.33125 + 0.15625 = 0.4875
    np.testing.assert_allclose(loss, 1.185 if terminal else 0.4875, rtol=1e-5)
    np.testing.assert_allclose(metrics["q/target"], (1.6 + second) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics["q/mean"], 1.625)  # (1 + 1.5 + 2 + 2) / 4


def test_sac_actor_loss_by_hand():
    # the samples are at s and the critics are the online ones: 0.2 * (-1) - min(3, 2) = -2.2 and
    # 0.2 * 0.5 - min(1, 4) = -0.9; mean -1.55
    def loss_fn(log_prob, q):
        return sac_actor_loss(log_prob, q, 0.2)

    (loss, metrics), (grad_log_prob, grad_q) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        SAMPLE_LOG_PROB, SAMPLE_Q
    )
    np.testing.assert_allclose(loss, -1.55, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss/actor"], -1.55, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss/entropy"], 0.25)  # -mean(-1, 0.5)
    np.testing.assert_allclose(grad_log_prob, [0.1, 0.1])  # alpha / B
    np.testing.assert_allclose(grad_q, [[0.0, -0.5], [-0.5, 0.0]])  # -1 / B through the smaller critic only


@pytest.mark.parametrize("entropy,grad_sign", [(-3.0, -1.0), (1.0, 1.0)], ids=["below-target", "above-target"])
def test_temperature_loss_gradient_sign(entropy, grad_sign):
    # target entropy -1: d loss / d log_alpha = entropy - target = -2 (below) or 2 (above),
    # so a descent step raises alpha below the target and lowers it above
    loss, (grad_log_alpha, grad_entropy) = jax.value_and_grad(temperature_loss, argnums=(0, 1))(
        jnp.float32(0.5), jnp.float32(entropy), -1.0
    )
    np.testing.assert_allclose(loss, 0.5 * (entropy + 1.0))
    np.testing.assert_allclose(grad_log_alpha, 2.0 * grad_sign)
    assert grad_entropy == 0.0  # the entropy estimate is a constant: only alpha moves
