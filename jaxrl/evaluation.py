"""Deterministic evaluation of a policy: pure and jittable."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrl.envs.base import Env


def evaluate(env: Env, act: Callable, key: jax.Array, num_episodes: int) -> dict[str, jax.Array]:
    """Runs `num_episodes` episodes side by side, each to its first end.

    act(obs [*obs_shape], key) -> action is the policy to evaluate. The envs
    step together until every episode has ended, or for `max_episode_steps`
    steps; an env whose episode ended steps on, auto-reset, and only its
    first episode counts.
    Returns {"eval/return_mean": [], "eval/return_std": [], "eval/length_mean": []}.
    """
    k_reset, k_run = jax.random.split(key)
    env_state, obs = jax.vmap(env.reset)(jax.random.split(k_reset, num_episodes))
    step_keys = jax.random.split(k_run, env.spec.max_episode_steps)

    def running(carry):
        t, *_, finished = carry
        return (t < step_keys.shape[0]) & ~finished.all()

    def step(carry):
        t, env_state, obs, ret, length, finished = carry
        k_act, k_env = jax.random.split(step_keys[t])
        action = jax.vmap(act)(obs, jax.random.split(k_act, num_episodes))
        env_state, ts = jax.vmap(env.step)(jax.random.split(k_env, num_episodes), env_state, action)
        live = ~finished
        ret = ret + jnp.where(live, ts.reward, 0.0)
        length = length + live.astype(jnp.int32)
        return t + 1, env_state, ts.obs, ret, length, finished | ts.done

    init = (jnp.int32(0), env_state, obs, jnp.zeros(num_episodes), jnp.zeros(num_episodes, jnp.int32),
            jnp.zeros(num_episodes, bool))
    # a while loop, not a fixed-length scan: an early policy falls within tens of steps of a
    # 1,000-step limit, and the loop ends with its last episode (jitted and vmapped alike)
    *_, ret, length, _ = jax.lax.while_loop(running, step, init)
    return {
        "eval/return_mean": ret.mean(),
        "eval/return_std": ret.std(),
        "eval/length_mean": length.astype(jnp.float32).mean(),
    }
