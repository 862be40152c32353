"""Small pure pieces with hand-checkable values: GAE, the epochs x minibatches loop,
running statistics, probe values, the critic on truncated steps only, conv layers, evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.algos.base import hyperparams
from jaxrl.algos.common import apply_where, epochs_of_minibatches, gae, minibatches, permutation
from jaxrl.algos.ppo import PPO, PPOConfig
from jaxrl.envs import make_env
from jaxrl.envs.base import EnvSpec, end_of_step, initial_state
from jaxrl.envs.normalize import RewardScaler, RunningStats
from jaxrl.evaluation import evaluate
from jaxrl.networks import MLP, Conv, QEnsemble


def test_gae_by_hand():
    gamma, lam = 0.9, 0.5
    # one env, four steps: the episode is truncated after step 1 and terminates after step 3
    rewards = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    values = jnp.array([[10.0], [20.0], [30.0], [40.0]])
    next_values = jnp.array([[20.0], [99.0], [40.0], [50.0]])  # 99: value of the truncated final obs
    terminated = jnp.array([[0], [0], [0], [1]], bool)
    done = jnp.array([[0], [1], [0], [1]], bool)
    adv, ret = gae(rewards, values, next_values, terminated, done, gamma, lam)
    d0 = 1 + 0.9 * 20 - 10
    d1 = 2 + 0.9 * 99 - 20  # bootstraps from the truncated state's value
    d2 = 3 + 0.9 * 40 - 30
    d3 = 4 - 40  # terminal: no bootstrap
    a3 = d3
    a2 = d2 + gamma * lam * a3
    a1 = d1  # the recursion stops at the episode end
    a0 = d0 + gamma * lam * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + values, rtol=1e-6)


def test_epochs_of_minibatches_visits_every_sample_once_per_epoch():
    batch = {"i": jnp.arange(12), "x": 10.0 * jnp.arange(12)}
    key = jax.random.PRNGKey(0)

    def step(counts, mb):
        # counts each sample's visits; reports a minibatch's size and its first index
        metrics = {"size": jnp.float32(mb["i"].shape[0]), "first": mb["i"][0].astype(jnp.float32)}
        return counts.at[mb["i"]].add(1), metrics

    counts, metrics = epochs_of_minibatches(step, jnp.zeros(12, jnp.int32), batch, key, num_epochs=3, num_minibatches=4)
    np.testing.assert_array_equal(counts, 3)  # 3 epochs, each a permutation of all 12 samples
    assert float(metrics["size"]) == 3.0  # 12 / 4 per minibatch, averaged over 3 x 4 steps
    # epoch e shuffles with split(key, 3)[e], exactly as `minibatches` does
    firsts = [minibatches(k, batch, 4)["i"][:, 0] for k in jax.random.split(key, 3)]
    np.testing.assert_allclose(float(metrics["first"]), np.mean(firsts), rtol=1e-6)
    mb = minibatches(key, batch, 4)
    np.testing.assert_array_equal(mb["x"], 10.0 * mb["i"])  # the leaves are shuffled together


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 4096, 5000])
def test_permutation_is_a_permutation(n):
    perm = np.asarray(jax.jit(permutation, static_argnums=1)(jax.random.PRNGKey(n), n))
    assert perm.dtype == np.int32
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_permutation_draws_every_order_equally_often():
    # 3 items have 6 orders; 60,000 shuffles put 10,000 +- 91 in each. A shuffle
    # whose ties kept their order, or that lost a round, would favour the identity.
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, 3)))(jax.random.split(jax.random.PRNGKey(0), 60_000)))
    orders, counts = np.unique(perms, axis=0, return_counts=True)
    assert len(orders) == 6
    chi2 = float(((counts - 10_000) ** 2 / 10_000).sum())
    assert chi2 < 20.5, counts  # 5 degrees of freedom: p = 0.001
    # and each of 16 items lands in each of 16 places equally often
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, 16)))(jax.random.split(jax.random.PRNGKey(1), 32_000)))
    places = np.stack([(perms == item).sum(0) for item in range(16)])
    chi2 = float(((places - 2_000) ** 2 / 2_000).sum())
    assert chi2 < 300, places  # 225 degrees of freedom: p = 0.001


def test_running_stats_match_numpy():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(3, 500, 4)).astype(np.float32)
    stats = RunningStats.create((4,))
    for batch in data:
        stats = stats.update(jnp.asarray(batch))
    flat = data.reshape(-1, 4)
    np.testing.assert_allclose(stats.mean, flat.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.var, flat.var(0), rtol=1e-3)
    normalized = stats.normalize(jnp.asarray(flat))
    np.testing.assert_allclose(normalized.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(normalized.std(0), 1.0, rtol=1e-3)


def test_reward_scaler_divides_by_return_std():
    scaler = RewardScaler.create(2)
    for _ in range(200):
        scaler = scaler.update(jnp.ones(2), jnp.zeros(2, bool), 0.9)
    # discounted returns climb towards 10; scaling divides by their spread
    assert float(scaler.returns[0]) == pytest.approx(10.0, rel=1e-3)
    std = float(jnp.sqrt(scaler.stats.var))
    assert float(scaler.scale(jnp.float32(1.0))) == pytest.approx(1.0 / std, rel=1e-3)


@pytest.mark.parametrize("trues", [0, 1, 5, 7])
def test_apply_where_equals_the_function_on_every_row_where_the_mask_holds(trues):
    x = jax.random.normal(jax.random.PRNGKey(trues), (40, 3))
    mask = jnp.zeros(40, bool).at[jax.random.permutation(jax.random.PRNGKey(1), 40)[:trues]].set(True)

    def fn(rows):
        return 2.0 * rows.sum(-1) + 1.0

    expected = jnp.where(mask, fn(x), 0.0)
    np.testing.assert_allclose(apply_where(fn, x, mask, max_rows=7), expected, rtol=1e-6)
    np.testing.assert_allclose(apply_where(fn, x, mask, max_rows=40), expected, rtol=1e-6)


class _OnlyTruncatesAfter:
    """`env` with its spec claiming a shorter time limit: the trainer then
    evaluates the critic on every row, as it would without the bound."""

    def __init__(self, env, steps: int):
        self._env, self.spec = env, env.spec.replace(max_episode_steps=steps)

    def __getattr__(self, name):
        return getattr(self._env, name)


def test_ppo_bootstraps_truncated_steps_as_a_full_critic_pass_would():
    env = make_env("gymnax", "MountainCarContinuous-v0", episode_length=5)  # 3 truncations per env in 16 steps
    config = PPOConfig(num_envs=4, rollout_length=16, hidden=(16,), num_minibatches=4)
    targets = []
    for spec_env in (env, _OnlyTruncatesAfter(env, 1)):
        algo = PPO(spec_env, config, total_timesteps=64)
        state = algo.init(jax.random.PRNGKey(0), hyperparams(config))
        _, batch, metrics = jax.jit(algo.collect)(state, jax.random.PRNGKey(1))
        targets.append(batch.target)
    np.testing.assert_allclose(targets[0], targets[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (2, 2), (3, 2)])
def test_a_torsos_conv_layer_is_the_convolution_of_its_kernel(kernel, stride):
    image_shape = (7, 6, 3)
    torso = MLP((8,), "relu", Conv(((5, kernel, stride),), image_shape))
    obs = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 7 * 6 * 3))  # two batch axes, flat as envs give them
    params = torso.init(jax.random.PRNGKey(1), obs)["params"]
    conv, dense = params["Conv_0"], params["Dense_0"]
    maps = jax.lax.conv_general_dilated(
        obs.reshape(8, *image_shape), conv["kernel"].reshape(kernel, kernel, 3, 5), (stride, stride), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    ) + conv["bias"]
    assert maps.shape[1:] == Conv(((5, kernel, stride),), image_shape).output_shape()
    expected = jax.nn.relu(jax.nn.relu(maps).reshape(2, 4, -1) @ dense["kernel"] + dense["bias"])
    np.testing.assert_allclose(torso.apply({"params": params}, obs), expected, rtol=1e-5, atol=1e-5)


def test_q_critics_see_the_action_after_the_conv_layers():
    critics = QEnsemble(2, (16,), conv=Conv(((4, 3, 1),), (5, 5, 2)))
    obs, action = jnp.ones((6, 50)), jnp.ones((6, 3))
    params = critics.init(jax.random.PRNGKey(0), obs, action)["params"]
    assert critics.apply({"params": params}, obs, action).shape == (6, 2)
    torso = params["VmapQCritic_0"]["MLP_0"]
    assert torso["Conv_0"]["kernel"].shape == (2, 3 * 3 * 2, 4)  # per critic: a 3x3 window of 2 channels -> 4 maps
    assert torso["Dense_0"]["kernel"].shape == (2, 3 * 3 * 4 + 3, 16)  # 3x3x4 features, then the action


class CountdownEnv:
    """Reward 1 a step; an episode lasts 1 to 5 steps, drawn at reset and shown as the observation,
    under a 10,000-step time limit that no episode reaches. Counts its steps on the host."""

    name = "countdown"

    def __init__(self):
        self.spec = EnvSpec(obs_shape=(1,), action_dim=1, discrete=False, action_low=(-1.0,), action_high=(1.0,),
                            max_episode_steps=10_000)
        self.steps_taken = 0

    def reset(self, key):
        left = jax.random.randint(key, (), 1, 6)
        return initial_state(left), left.astype(jnp.float32).reshape((1,))

    def step(self, key, state, action):
        jax.debug.callback(self._count)
        left = state.inner - 1
        terminated = left == 0
        fresh, fresh_obs = self.reset(key)
        inner = jnp.where(terminated, fresh.inner, left)
        obs = jnp.where(terminated, fresh_obs, left.astype(jnp.float32).reshape((1,)))
        return end_of_step(inner, state, obs, jnp.float32(1.0), terminated, jnp.asarray(False), obs)

    def _count(self):
        self.steps_taken += 1


def test_evaluation_counts_each_first_episode_and_stops_when_the_last_has_ended():
    env = CountdownEnv()
    key = jax.random.PRNGKey(3)
    lengths = jax.vmap(lambda k: env.reset(k)[0].inner)(jax.random.split(jax.random.split(key)[0], 8))
    results = jax.jit(lambda k: evaluate(env, lambda obs, k: jnp.zeros(1), k, 8))(key)
    np.testing.assert_allclose(results["eval/length_mean"], np.mean(lengths))
    np.testing.assert_allclose(results["eval/return_mean"], np.mean(lengths))
    np.testing.assert_allclose(results["eval/return_std"], np.std(lengths), rtol=1e-6)
    # a step of the 8 envs side by side counts once or once per env: far below the time limit either way
    assert 0 < env.steps_taken <= 8 * int(lengths.max()), env.steps_taken
