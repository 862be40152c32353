"""Deterministic evaluation of a policy: pure and jittable."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrl.envs.base import Env


def evaluate(env: Env, act: Callable, key: jax.Array, num_episodes: int) -> dict[str, jax.Array]:
    """Runs `num_episodes` episodes in parallel, each to its first end.

    act(obs [*obs_shape], key) -> action is the policy to evaluate. Every env
    runs `max_episode_steps` steps (a fixed-length scan keeps this jittable);
    only the first episode of each counts.
    Returns {"eval/return_mean": [], "eval/return_std": [], "eval/length_mean": []}.
    """
    k_reset, k_run = jax.random.split(key)
    env_state, obs = jax.vmap(env.reset)(jax.random.split(k_reset, num_episodes))

    def step(carry, step_key):
        env_state, obs, ret, length, finished = carry
        k_act, k_env = jax.random.split(step_key)
        action = jax.vmap(act)(obs, jax.random.split(k_act, num_episodes))
        env_state, ts = jax.vmap(env.step)(jax.random.split(k_env, num_episodes), env_state, action)
        live = ~finished
        ret = ret + jnp.where(live, ts.reward, 0.0)
        length = length + live.astype(jnp.int32)
        return (env_state, ts.obs, ret, length, finished | ts.done), None

    init = (env_state, obs, jnp.zeros(num_episodes), jnp.zeros(num_episodes, jnp.int32), jnp.zeros(num_episodes, bool))
    (_, _, ret, length, _), _ = jax.lax.scan(step, init, jax.random.split(k_run, env.spec.max_episode_steps))
    return {
        "eval/return_mean": ret.mean(),
        "eval/return_std": ret.std(),
        "eval/length_mean": length.astype(jnp.float32).mean(),
    }
