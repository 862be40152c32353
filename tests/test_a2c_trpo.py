"""A2C and TRPO: the natural-gradient pieces against explicit linear algebra,
the trust region, config checks, and real learning. The contract every
algorithm keeps is in test_contract.py."""

from __future__ import annotations

import re
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxrl  # noqa: F401  (sets the CPU scheduler flag before jax starts)
from conftest import compose, run_config
from jaxrl.algos.base import hyperparams
from jaxrl.algos.natural_gradient import conjugate_gradient, fisher_vector_product
from jaxrl.algos.trpo import TRPOConfig, trpo_policy_step
from jaxrl.errors import ConfigError
from jaxrl.networks import CategoricalPolicy, GaussianPolicy, policy_distribution
from jaxrl.runner import train
from jaxrl.sinks.jsonl import JsonlSink

QUIET = ("video.enabled=false", "eval.episodes=8")
MOUNTAINCAR = {"suite": "gymnax", "name": "MountainCarContinuous-v0"}
CARTPOLE = {"suite": "gymnax", "name": "CartPole-v1"}


# --- conjugate gradient and Fisher-vector products -------------------------


def test_conjugate_gradient_solves_spd_system():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(12, 12))
    a = m @ m.T + 0.5 * np.eye(12)
    b = rng.normal(size=12)
    x = conjugate_gradient(lambda v: jnp.asarray(a, jnp.float32) @ v, jnp.asarray(b, jnp.float32), iters=40)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, b), rtol=1e-3, atol=1e-3)


def test_conjugate_gradient_of_zero_is_zero_without_nans():
    x = conjugate_gradient(lambda v: 2.0 * v, jnp.zeros(5), iters=10)
    np.testing.assert_array_equal(np.asarray(x), np.zeros(5))


def _policy_and_obs(discrete: bool):
    """A tiny policy with random (not near-zero) params, and 16 observations [16, 3]."""
    k_init, k_perturb, k_obs = jax.random.split(jax.random.PRNGKey(1), 3)
    net = CategoricalPolicy(3, (4,)) if discrete else GaussianPolicy(2, (4,))
    obs = jax.random.normal(k_obs, (16, 3))
    flat, unravel = ravel_pytree(net.init(k_init, obs[0]))
    flat = flat + 0.5 * jax.random.normal(k_perturb, flat.shape)

    def dist(x):
        return policy_distribution(discrete, net.apply(unravel(x), obs))

    return flat, dist


@pytest.mark.parametrize("discrete", [False, True], ids=["gaussian", "categorical"])
def test_fisher_vector_product_equals_explicit_kl_hessian(discrete):
    flat, dist = _policy_and_obs(discrete)
    old = dist(flat)

    def kl(x):
        return jnp.mean(old.kl_divergence(dist(x)))

    v = jax.random.normal(jax.random.PRNGKey(2), flat.shape)

    @jax.jit
    def products(x, v):
        fisher = jax.hessian(kl)(x)  # [D, D], built explicitly only here
        return fisher, fisher_vector_product(kl, x, 0.0)(v), fisher_vector_product(kl, x, 0.1)(v)

    fisher, fv, damped = products(flat, v)
    np.testing.assert_allclose(fv, fisher @ v, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(damped, fisher @ v + 0.1 * v, rtol=1e-4, atol=1e-6)
    # The Fisher is positive semi-definite: conjugate gradient's precondition.
    assert np.linalg.eigvalsh(np.asarray(fisher)).min() > -1e-5


# --- the trust-region step ---------------------------------------------------


def _trust_region_problem():
    """A Gaussian policy, 256 states, sampled actions and advantages that favour action[0] > 0."""
    net = GaussianPolicy(2, (8,))
    k_init, k_obs, k_act = jax.random.split(jax.random.PRNGKey(3), 3)
    obs = jax.random.normal(k_obs, (256, 3))
    actor = net.init(k_init, obs[0])

    def dist_fn(params, o):
        return policy_distribution(False, net.apply(params, o))

    action = dist_fn(actor, obs).sample(seed=k_act)
    return dist_fn, actor, obs, action, action[:, 0]


def test_trpo_step_keeps_the_kl_bound_and_improves_the_surrogate():
    dist_fn, actor, obs, action, advantage = _trust_region_problem()
    max_kls = jnp.asarray([1e-3, 1e-2, 1e-1, 3.0])
    hp = jax.tree.map(lambda x: jnp.full(4, x), hyperparams(TRPOConfig(cg_damping=0.1, backtrack_coef=0.5))).replace(max_kl=max_kls)
    # vmapped over the trust-region size: the step is a pure function of traced hyperparameters
    step = jax.vmap(trpo_policy_step, in_axes=(None, None, None, None, None, 0, None, None))
    new_actor, metrics = jax.jit(step, static_argnums=(0, 6, 7))(dist_fn, actor, obs, action, advantage, hp, 10, 10)
    old = dist_fn(actor, obs)
    for i, max_kl in enumerate(np.asarray(max_kls)):
        params = jax.tree.map(lambda x: x[i], new_actor)
        new = dist_fn(params, obs)
        kl = float(jnp.mean(old.kl_divergence(new)))
        assert metrics["trpo/accepted"][i] == 1.0
        assert 0.0 < kl <= max_kl * (1 + 1e-5), (max_kl, kl)
        np.testing.assert_allclose(kl, metrics["trpo/kl"][i], rtol=1e-4)
        ratio = jnp.exp(new.log_prob(action) - old.log_prob(action))
        assert float(jnp.mean(ratio * advantage)) > float(jnp.mean(advantage))
    # Where the quadratic model is good, the full step lands near the edge of the region.
    assert metrics["trpo/kl"][0] > 0.5 * max_kls[0]
    assert metrics["trpo/line_search_tries"][0] == 1.0


def test_trpo_step_rejects_a_step_that_cannot_improve():
    dist_fn, actor, obs, action, _ = _trust_region_problem()
    hp = hyperparams(TRPOConfig(max_kl=0.01, cg_damping=0.1, backtrack_coef=0.8))
    step = jax.jit(trpo_policy_step, static_argnums=(0, 6, 7))
    new_actor, metrics = step(dist_fn, actor, obs, action, jnp.zeros(256), hp, 10, 5)
    assert metrics["trpo/accepted"] == 0.0
    chex.assert_trees_all_equal(new_actor, actor)


# --- the algorithm contract ----------------------------------------------------

# --- configuration -------------------------------------------------------------


@pytest.mark.parametrize("experiment", ["a2c_mountaincar", "trpo_mountaincar"])
def test_mountaincar_presets_compose(experiment):
    run = run_config(f"experiment={experiment}")
    assert run.env.name == "MountainCarContinuous-v0" and run.seeds == 4


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["algo=trpo", "algo.vf_minibatches=7"], "algo.vf_minibatches=7 does not divide"),
        (["algo=trpo", "algo.max_kl=0"], "algo.max_kl must be positive"),
        (["algo=trpo", "algo.backtrack_coef=1.0"], "algo.backtrack_coef must be in (0, 1)"),
        (["algo=trpo", "algo.cg_iters=0"], "algo.cg_iters must be positive"),
        (["algo=a2c", "algo.ent_coef=-0.1"], "algo.ent_coef must be >= 0"),
        (["algo=a2c", "algo.rollout_length=0"], "algo.rollout_length must be positive"),
    ],
)
def test_bad_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_config(*overrides)


# --- learning -----------------------------------------------------------------


def _train(run_dir: Path, *overrides: str) -> dict:
    """Trains like the command line, in this process, with metrics.jsonl only."""
    return train(run_config(*overrides), run_dir, [JsonlSink()], compose(*overrides))


@pytest.mark.slow
def test_trpo_preset_solves_mountaincar_continuous(tmp_path):
    # half the preset's steps: every one of 32 seeds tried was >= 92.9 by then
    summary = _train(tmp_path, "experiment=trpo_mountaincar", "seeds=2", "total_timesteps=98304", "num_logs=8", *QUIET)
    assert min(summary["final"]["eval/return_mean"]) >= 90.0, summary["final"]


@pytest.mark.slow
def test_a2c_preset_solves_mountaincar_continuous(tmp_path):
    summary = _train(tmp_path, "experiment=a2c_mountaincar", "seeds=2", *QUIET)
    assert min(summary["final"]["eval/return_mean"]) >= 90.0, summary["final"]


@pytest.mark.slow
def test_a2c_learns_discrete_cartpole(tmp_path):
    summary = _train(tmp_path, "algo=a2c", "env=gymnax", "seeds=2", "total_timesteps=60000", "num_logs=4", *QUIET)
    # a random policy lasts about 22 steps
    assert min(summary["final"]["eval/return_mean"]) >= 150.0, summary["final"]
