"""DDPG, TD3 and SAC: the pure pieces against hand-checkable values (OU noise,
Polyak averaging, the replay ring, the temperature, the tanh-Gaussian density),
config checks, and real learning on MountainCarContinuous. The contract every
algorithm keeps is in test_contract.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl  # noqa: F401  (sets the CPU scheduler flag before jax starts)
from conftest import compose, run_config
from jaxrl.algos import SAC
from jaxrl.algos.base import hyperparams
from jaxrl.algos.offpolicy import ou_step, polyak
from jaxrl.algos.replay import Transition, make_buffer
from jaxrl.algos.sac import SACConfig
from jaxrl.envs import make_env
from jaxrl.errors import ConfigError
from jaxrl.networks import tanh_gaussian
from jaxrl.runner import train
from jaxrl.sinks.jsonl import JsonlSink

MOUNTAINCAR = make_env("gymnax", "MountainCarContinuous-v0")
SMALL = dict(num_envs=2, rollout_length=2, gradient_steps=2, batch_size=8, warmup_steps=8, hidden=(16,))


# --- noise, targets, buffer, temperature, distribution ---------------------------


def test_ou_noise_is_stationary_with_the_stated_variance_and_correlated():
    theta, sigma, chains, steps = 0.2, 0.5, 4096, 400
    step = jax.jit(lambda x, k: (ou_step(x, k, theta, sigma),) * 2)
    # chains start at 0; 100 steps (20 correlation times) forget that start
    _, xs = jax.lax.scan(step, jnp.zeros(chains), jax.random.split(jax.random.PRNGKey(0), steps))
    xs = np.asarray(xs[100:])
    stationary_var = sigma**2 / (2 * theta)
    assert abs(xs.mean()) < 0.02
    np.testing.assert_allclose(xs.var(), stationary_var, rtol=0.03)
    lag1 = np.mean(xs[1:] * xs[:-1]) / xs.var()
    np.testing.assert_allclose(lag1, np.exp(-theta), atol=0.01)  # e^-0.2 = 0.82: positive and as stated
    lag10 = np.mean(xs[10:] * xs[:-10]) / xs.var()
    np.testing.assert_allclose(lag10, np.exp(-10 * theta), atol=0.02)


def test_polyak_update_by_hand():
    target = {"w": jnp.array([0.0, 10.0]), "b": jnp.array(4.0)}
    online = {"w": jnp.array([1.0, 0.0]), "b": jnp.array(4.0)}
    out = polyak(target, online, jnp.float32(0.1))
    np.testing.assert_allclose(out["w"], [0.1, 9.0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 4.0)
    np.testing.assert_array_equal(polyak(target, online, 1.0)["w"], online["w"])  # tau 1 copies


def _items(values) -> Transition:
    v = jnp.asarray(values, jnp.float32)
    column = v[:, None]
    return Transition(obs=column, action=column, reward=v, next_obs=column + 1, terminated=jnp.zeros_like(v))


def test_replay_buffer_samples_only_valid_entries_and_wraps_around():
    buffer = make_buffer(capacity=8, batch_size=8)
    add, sample = jax.jit(buffer.add), jax.jit(lambda s, k: buffer.sample(s, k).experience)
    state = buffer.init(jax.tree.map(lambda x: x[0], _items([0.0])))
    state = add(state, _items([1.0, 2.0, 3.0]))
    seen = np.concatenate([np.asarray(sample(state, jax.random.PRNGKey(i)).reward) for i in range(50)])
    assert set(seen) == {1.0, 2.0, 3.0}  # never the zeros of the empty slots
    state = add(state, _items(np.arange(4.0, 11.0)))  # 10 items into 8 slots: 1 and 2 overwritten
    assert sorted(np.asarray(state.experience.reward).ravel()) == list(np.arange(3.0, 11.0))
    batch = sample(state, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(batch.next_obs[:, 0], batch.obs[:, 0] + 1)  # fields stay together
    seen = np.concatenate([np.asarray(sample(state, jax.random.PRNGKey(i)).reward) for i in range(50)])
    assert set(seen) == set(np.arange(3.0, 11.0))


@pytest.mark.parametrize("entropy,rises", [(-3.0, True), (1.0, False)])
def test_temperature_rises_below_the_target_entropy_and_falls_above(entropy, rises):
    config = SACConfig(**SMALL)
    sac = SAC(MOUNTAINCAR, config, total_timesteps=64)
    hp = hyperparams(config)
    assert sac.target_entropy == -1.0  # -action_dim
    learner = sac.init_learner(jax.random.PRNGKey(0), hp)
    alpha0 = float(jnp.exp(learner.params["log_alpha"]))
    alpha = float(jnp.exp(sac.temperature_step(learner, jnp.float32(entropy), hp).params["log_alpha"]))
    assert alpha0 == pytest.approx(1.0)
    assert (alpha > alpha0) if rises else (alpha < alpha0)


def test_tanh_gaussian_log_prob_is_the_change_of_variables():
    mean, log_std = jnp.array([0.3, -1.0]), jnp.array([-0.5, 0.2])
    dist = tanh_gaussian(mean, log_std)
    actions, log_probs = dist.sample_and_log_prob(seed=jax.random.PRNGKey(0), sample_shape=(64,))
    pre_tanh = jnp.arctanh(actions)
    gauss = jax.scipy.stats.norm.logpdf(pre_tanh, mean, jnp.exp(log_std)).sum(-1)
    # log|det| of the numerical Jacobian of y = tanh(x), not the closed form
    log_det = jax.vmap(lambda x: jnp.linalg.slogdet(jax.jacfwd(jnp.tanh)(x))[1])(pre_tanh)
    np.testing.assert_allclose(log_probs, gauss - log_det, rtol=1e-4, atol=1e-4)
    assert np.all(np.abs(np.asarray(actions)) < 1.0)

    # one dimension: the density integrates to one over (-1, 1)
    one = tanh_gaussian(jnp.array([0.3]), jnp.array([-0.7]))
    grid = jnp.linspace(-0.999, 0.999, 20001)
    density = jnp.exp(jax.vmap(lambda y: one.log_prob(y[None]))(grid))
    np.testing.assert_allclose(float(jnp.trapezoid(density, grid)), 1.0, atol=2e-3)


# --- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["algo=td3", "algo.gradient_steps=3"], "algo.gradient_steps=3 must be a multiple of algo.policy_delay=2"),
        (["algo=sac", "algo.noise=pink"], "unknown algo.noise 'pink'"),
        (["algo=ddpg", "algo.num_envs=8", "algo.buffer_size=4"], "algo.buffer_size=4 is smaller than one update"),
        (["algo=sac", "algo.buffer_size=100"], "algo.buffer_size=100 is smaller than algo.batch_size=256"),
        (["algo=ddpg", "algo.tau=0"], "algo.tau must be in"),
        (["algo=sac", "algo.init_alpha=0"], "algo.init_alpha must be positive"),
    ],
)
def test_bad_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_config(*overrides)


def test_discrete_actions_are_refused():
    with pytest.raises(ConfigError, match="needs continuous actions; CartPole-v1 has 2 discrete ones: train it with algo=ppo, a2c or trpo"):
        SAC(make_env("gymnax", "CartPole-v1"), SACConfig(), total_timesteps=1000)


# --- learning -----------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["td3", "sac"])  # DDPG is TD3's code with the switches off
@pytest.mark.slow
def test_preset_solves_mountaincar_continuous(tmp_path, algo):
    overrides = (f"experiment={algo}_mountaincar", "seeds=2", "eval.episodes=8", "video.enabled=false")
    summary = train(run_config(*overrides), tmp_path, [JsonlSink()], compose(*overrides))
    assert summary["env_steps"] == 100_000
    assert min(summary["final"]["eval/return_mean"]) >= 90.0, summary["final"]
