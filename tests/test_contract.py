"""The algorithm contract, checked once for every algorithm in `ALGORITHMS`.

- `update` traces once, and a seed trained alone equals the same seed inside a
  vmapped population (programs compiled by the runner's own `compile_programs`);
- every traced hyperparameter changes training when it alone is changed, so
  none is silently read as a constant;
- the YAML defaults (configs/algo/*.yaml) equal the config class's;
- the critic learns a probe environment's known value, bootstrapping on
  truncation and not on termination.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl  # noqa: F401  (sets the CPU scheduler flag before jax starts)
from conftest import ProbeEnv, run_config
from jaxrl.algos import ALGORITHMS
from jaxrl.algos.base import StaticView, hyperparams, traced_names
from jaxrl.envs import make_env
from jaxrl.runner import Schedule, compile_programs

ON_SMALL = dict(num_envs=4, rollout_length=8, hidden=(16, 16))
OFF_SMALL = dict(num_envs=2, rollout_length=2, gradient_steps=2, batch_size=8, warmup_steps=8, hidden=(16,))

# Each algorithm's smallest useful config, chosen so that every traced
# hyperparameter is in play: OU noise (noise_theta), target smoothing on for
# DDPG (target_noise_clip).
CASES = {
    "ppo": ("MountainCarContinuous-v0", dict(**ON_SMALL, num_epochs=2, num_minibatches=4)),
    "a2c": ("CartPole-v1", dict(ON_SMALL)),
    "trpo": ("MountainCarContinuous-v0", dict(**ON_SMALL, vf_minibatches=4, vf_epochs=2)),
    "ddpg": ("MountainCarContinuous-v0", dict(**OFF_SMALL, noise="ou", target_noise=0.2)),
    "td3": ("MountainCarContinuous-v0", dict(**OFF_SMALL, noise="ou")),
    "sac": ("MountainCarContinuous-v0", dict(**OFF_SMALL, noise="ou")),
}
# Batched and unbatched matmuls round differently (about 1e-9 after one
# update); TRPO's solve and line search amplify that to about 2e-5 after four.
# A leak between members would differ by the size of the values.
TOLERANCE = {"trpo": dict(rtol=1e-3, atol=1e-4), "ppo": dict(rtol=2e-4, atol=2e-5)}
UPDATES = 3  # per chunk; off-policy: the first is warm-up, the rest learn


def make(name: str, **overrides):
    """(algorithm, its config) for CASES[name], with `overrides` on the config."""
    env_name, fields = CASES[name]
    algo_cls = ALGORITHMS[name]
    config = algo_cls.config_cls(**{**fields, **overrides})
    return algo_cls(make_env("gymnax", env_name), config, total_timesteps=2 * UPDATES * 64), config


def train_population(algo, hp, seeds):
    """Two chunks of UPDATES updates for a population, compiled as the runner does.

    hp: the config as a pytree with [P] leaves. Returns (states, (metrics of chunk 1, of chunk 2)).
    """
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
    schedule = Schedule(num_chunks=2, updates_per_chunk=UPDATES, steps_per_update=algo.steps_per_update)
    programs = compile_programs(algo, schedule, keys, hp, eval_episodes=2)
    states = programs.init(keys, hp)
    states, first = programs.chunk(states)
    states, second = programs.chunk(states)
    return states, (first, second)


def population(config, size: int):
    """`config` as hp for `size` identical members."""
    return jax.tree.map(lambda x: jnp.full(size, x, jnp.float32), config)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_update_traces_once_and_a_seed_alone_equals_it_in_a_batch(name):
    algo, config = make(name)
    chex.clear_trace_counter()  # counters are keyed by hash: another test's algo may share one
    algo.update = chex.assert_max_traces(algo.update, n=1)  # raises on a second trace
    states, metrics = train_population(algo, population(config, 3), [3, 5, 7])
    assert all(np.isfinite(np.asarray(v)).all() for m in metrics for v in m.values())
    np.testing.assert_array_equal(np.asarray(states.env_steps), 2 * UPDATES * algo.steps_per_update)
    if name in ("ddpg", "td3", "sac"):
        assert float(metrics[1]["loss/critic"].min()) > 0  # learning happened after the warm-up

    chex.clear_trace_counter()  # a population of one is a new shape (and unbatched), hence one new trace
    alone = train_population(algo, population(config, 1), [5])
    member = (jax.tree.map(lambda x: x[1:2], states), jax.tree.map(lambda x: x[:, 1:2], metrics))  # metrics: [updates, P]
    chex.assert_trees_all_close(alone, member, **TOLERANCE.get(name, dict(rtol=1e-5, atol=1e-6)))
    # Every discrete outcome (episodes ended, line-search decisions) is identical.
    for name in ("episode/count", "trpo/accepted", "trpo/line_search_tries"):
        for got, want in zip(alone[1], member[1]):
            if name in got:
                np.testing.assert_array_equal(got[name], want[name])


def _perturbed(value: float) -> float:
    # a tenth keeps every hyperparameter in its valid range and far enough to matter
    return value * 0.1 if value else 0.5


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_traced_hyperparameter_changes_training(name):
    """Member 0 trains with the defaults, member i+1 with traced field i alone
    changed, all from the same seed: each must end in a different state.
    An algorithm that read a hyperparameter as a Python constant would train
    that member exactly like member 0."""
    # a trust region wide enough that TRPO's line search backtracks (backtrack_coef)
    algo, config = make(name, **({"max_kl": 0.5} if name == "trpo" else {}))
    names = traced_names(type(config))
    configs = [config, *(config.replace(**{n: _perturbed(getattr(config, n))}) for n in names)]
    hp = jax.tree.map(lambda *values: jnp.asarray(values, jnp.float32), *configs)
    states, _ = train_population(algo, hp, [0] * len(configs))
    learned = jax.tree.leaves(states.replace(hp=None))
    inert = [
        n
        for i, n in enumerate(names, start=1)
        if all(np.array_equal(np.asarray(leaf[0]), np.asarray(leaf[i])) for leaf in learned)
    ]
    assert not inert, f"{name}: training ignores {inert}"


def test_jitted_code_cannot_read_a_traced_hyperparameter_from_the_config():
    algo, _ = make("ppo")
    assert isinstance(algo.config, StaticView) and algo.config.num_envs == 4
    with pytest.raises(AttributeError, match="gamma is a traced hyperparameter of PPOConfig: read state.hp.gamma"):
        algo.config.gamma


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_yaml_defaults_equal_the_config_class(name):
    assert run_config(f"algo={name}").algo == ALGORITHMS[name].config_cls(), (
        f"configs/algo/{name}.yaml and {ALGORITHMS[name].config_cls.__name__}'s defaults disagree"
    )


PROBE = {
    "ppo": dict(num_envs=8, rollout_length=16, num_epochs=4, num_minibatches=4, hidden=(16,), lr=1e-2, clip_value=False),
    "a2c": dict(num_envs=8, rollout_length=16, hidden=(16,), lr=1e-2),
    "trpo": dict(num_envs=8, rollout_length=16, hidden=(16,), lr=1e-2, vf_minibatches=4),
    "ddpg": dict(num_envs=4, rollout_length=2, gradient_steps=4, batch_size=8, warmup_steps=8, hidden=(16,), critic_lr=3e-3, tau=0.1),
    "td3": dict(num_envs=4, rollout_length=2, gradient_steps=4, batch_size=8, warmup_steps=8, hidden=(16,), critic_lr=3e-3, tau=0.1),
    # a negligible temperature: the soft value's entropy term would move the known value
    "sac": dict(num_envs=4, rollout_length=2, gradient_steps=4, batch_size=8, warmup_steps=8, hidden=(16,), critic_lr=3e-3, tau=0.1,
                autotune=False, init_alpha=1e-4),
}
ON_POLICY_PROBE = dict(normalize_obs=False, normalize_reward=False, anneal_lr=False, max_grad_norm=10.0)


@pytest.mark.parametrize("truncate", [False, True], ids=["terminated", "truncated"])
@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_critic_learns_the_probe_value(name, truncate):
    """ProbeEnv: reward 1, every episode one step long. The value is 1 when the
    step terminates; when it is truncated it bootstraps, 1 / (1 - gamma) = 2
    with gamma 0.5. A trainer that confuses the two learns the wrong one."""
    algo_cls = ALGORITHMS[name]
    on_policy = name in ("ppo", "a2c", "trpo")
    config = algo_cls.config_cls(**PROBE[name], **(ON_POLICY_PROBE if on_policy else {}), gamma=0.5)
    algo = algo_cls(ProbeEnv(truncate), config, total_timesteps=300 * 128)
    state = algo.init(jax.random.PRNGKey(0), hyperparams(config))
    state, metrics = jax.jit(lambda s: jax.lax.scan(lambda c, _: algo.update(c), s, None, length=300))(state)
    expected = 2.0 if truncate else 1.0
    if on_policy:
        values = algo.critic_net.apply(state.critic, jnp.array([[1.0], [-1.0]]))
    else:
        values = metrics["q/mean"][-20:].mean()
        stored = jax.tree.map(lambda x: x[0, : int(state.env_steps)], state.buffer.experience)  # the filled slots
        np.testing.assert_array_equal(stored.next_obs, stored.obs)  # the pre-reset obs, not the next episode's
        np.testing.assert_array_equal(stored.terminated, 0.0 if truncate else 1.0)
    np.testing.assert_allclose(values, expected, rtol=0.05)
