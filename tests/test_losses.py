"""The losses of jaxrl.algos.losses against numbers worked out by hand (in the
comments), in the style of Brax's losses_test.py: tiny arrays, every term and
every clipping branch checked, and gradients where the sign is the point."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.algos.losses import (
    a2c_loss,
    normalize_advantage,
    policy_gradient_loss,
    ppo_loss,
    ppo_policy_loss,
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
    expected = {"loss/policy": -1.0, "loss/value": 0.25, "loss/entropy": 1.0, "loss/approx_kl": 0.0, "loss/clip_frac": 0.0}
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
    np.testing.assert_allclose([metrics["loss/policy"], metrics["loss/value"], metrics["loss/entropy"]], [1.0, 0.625, 1.0])
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
