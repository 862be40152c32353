"""A bare single-file PPO of PureJaxRL's shape, as a user of that style runs it.

One function `train(key)` holds the whole run (vectorised gymnax env with
observation and reward normalisation, a rollout scan, GAE, epochs x shuffled
minibatches, clipped surrogate and value losses), jitted once with
`jax.jit`; nothing of jaxrl is imported. Written for bench/peers.py, which
runs it with XLA_FLAGS as the user has it (no CPU-scheduler guard).

    python bench/peers/bare_ppo.py '{"total_timesteps": 262144, "num_envs": 16, ...}'

Prints one JSON line: {"sps": env steps/s of the compiled call, "compile_s": ...,
"return": mean return of the episodes finished in the last update}.
"""

from __future__ import annotations

import json
import sys
import time

import flax.linen as nn
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax


class ActorCritic(nn.Module):
    """Separate tanh MLPs for the Gaussian policy's mean and the value; a state-independent log std."""

    action_dim: int
    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, obs):
        """(mean, log_std, value) of a batch of observations."""
        def mlp(x, out, scale):
            """Orthogonally initialised tanh layers, then a linear head of width `out`."""
            for width in self.hidden:
                x = nn.tanh(nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(x))
            return nn.Dense(out, kernel_init=nn.initializers.orthogonal(scale))(x)

        mean = mlp(obs, self.action_dim, 0.01)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return mean, log_std, mlp(obs, 1, 1.0)[..., 0]


def gaussian_log_prob(x, mean, log_std):
    """Log density of a diagonal Gaussian, summed over the action axis."""
    return jnp.sum(-0.5 * ((x - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def update_stats(stats, x):
    """Running (mean, var, count) merged with the batch `x` (parallel-variance formula)."""
    mean, var, count = stats
    b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
    delta, total = b_mean - mean, count + b_count
    new_mean = mean + delta * b_count / total
    m2 = var * count + b_var * b_count + delta**2 * count * b_count / total
    return new_mean, m2 / total, total


def make_train(c: dict):
    """The whole training run for settings `c`, as one function of a PRNG key."""
    env, params = gymnax.make("MountainCarContinuous-v0")
    n, t = c["num_envs"], c["rollout_length"]
    num_updates = c["total_timesteps"] // (n * t)
    minibatch = n * t // c["num_minibatches"]
    low, high = params.min_action, params.max_action
    net = ActorCritic(env.action_space(params).shape[0], tuple(c["hidden"]))
    schedule = (lambda i: c["lr"] * (1.0 - (i // (c["num_epochs"] * c["num_minibatches"])) / num_updates)) if c["anneal_lr"] else c["lr"]
    tx = optax.chain(optax.clip_by_global_norm(c["max_grad_norm"]), optax.adam(schedule, eps=1e-5))
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def normalise(x, stats):
        """Observations standardised by the running statistics, clipped at 10."""
        return jnp.clip((x - stats[0]) / jnp.sqrt(stats[1] + 1e-8), -10, 10)

    def loss_fn(p, batch):
        """Clipped surrogate + vf_coef x clipped value loss - ent_coef x entropy."""
        obs, action, old_logp, old_value, adv, target = batch
        mean, log_std, value = net.apply(p, obs)
        ratio = jnp.exp(gaussian_log_prob(action, mean, log_std) - old_logp)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        policy = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - c["clip_eps"], 1 + c["clip_eps"]) * adv).mean()
        clipped = old_value + jnp.clip(value - old_value, -c["clip_eps"], c["clip_eps"])
        value_loss = 0.5 * jnp.maximum((value - target) ** 2, (clipped - target) ** 2).mean()
        entropy = jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e))
        return policy + c["vf_coef"] * value_loss - c["ent_coef"] * entropy

    def train(key):
        """Initialises everything from `key` and runs every update in one scan."""
        key, k_net, k_env = jax.random.split(key, 3)
        obs, env_state = reset(jax.random.split(k_env, n), params)
        p = net.init(k_net, obs)
        obs_stats = update_stats((jnp.zeros(obs.shape[1:]), jnp.ones(obs.shape[1:]), 1e-4), obs)
        ret_stats = (jnp.zeros(()), jnp.ones(()), 1e-4)
        carry = (p, tx.init(p), env_state, obs, obs_stats, jnp.zeros(n), ret_stats, jnp.zeros(n), key)

        def env_step(carry, _):
            """One step of every env with the current policy; normalisation statistics updated."""
            p, opt, env_state, obs, obs_stats, disc_ret, ret_stats, ep_ret, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            norm_obs = normalise(obs, obs_stats)
            mean, log_std, value = net.apply(p, norm_obs)
            action = mean + jnp.exp(log_std) * jax.random.normal(k_act, mean.shape)
            next_obs, env_state, reward, term, trunc, _ = step(
                jax.random.split(k_env, n), env_state, jnp.clip(action, low, high), params
            )
            done = jnp.logical_or(term, trunc)
            obs_stats = update_stats(obs_stats, next_obs)
            disc_ret = disc_ret * c["gamma"] * (1 - done) + reward
            ret_stats = update_stats(ret_stats, disc_ret[:, None])
            ret_stats = jax.tree.map(jnp.squeeze, ret_stats)
            scaled = reward / jnp.sqrt(ret_stats[1] + 1e-8)
            ep_ret = ep_ret + reward
            out = (norm_obs, action, gaussian_log_prob(action, mean, log_std), value, scaled, done, jnp.where(done, ep_ret, jnp.nan))
            ep_ret = jnp.where(done, 0.0, ep_ret)
            return (p, opt, env_state, next_obs, obs_stats, disc_ret, ret_stats, ep_ret, key), out

        def update(carry, _):
            """A rollout, GAE, then epochs of shuffled minibatch Adam steps."""
            carry, (obs, action, logp, value, reward, done, finished) = jax.lax.scan(env_step, carry, None, t)
            p, opt, env_state, last_obs, obs_stats, disc_ret, ret_stats, ep_ret, key = carry
            last_value = net.apply(p, normalise(last_obs, obs_stats))[2]

            def gae(next_, x):
                """One step of the backward GAE recursion."""
                adv, next_value = next_
                r, v, d = x
                delta = r + c["gamma"] * next_value * (1 - d) - v
                adv = delta + c["gamma"] * c["gae_lambda"] * (1 - d) * adv
                return (adv, v), adv

            _, adv = jax.lax.scan(gae, (jnp.zeros(n), last_value), (reward, value, done), reverse=True)
            batch = jax.tree.map(lambda x: x.reshape(n * t, *x.shape[2:]), (obs, action, logp, value, adv, adv + value))

            def epoch(state, key):
                """One pass over the batch in shuffled minibatches."""
                perm = jax.random.permutation(key, n * t)
                mbs = jax.tree.map(lambda x: x[perm].reshape(c["num_minibatches"], minibatch, *x.shape[1:]), batch)

                def minibatch_step(state, mb):
                    """One clipped Adam step on a minibatch."""
                    p, opt = state
                    grads = jax.grad(loss_fn)(p, mb)
                    updates, opt = tx.update(grads, opt, p)
                    return (optax.apply_updates(p, updates), opt), None

                return jax.lax.scan(minibatch_step, state, mbs)[0], None

            key, k_epochs = jax.random.split(key)
            (p, opt), _ = jax.lax.scan(epoch, (p, opt), jax.random.split(k_epochs, c["num_epochs"]))
            return (p, opt, env_state, last_obs, obs_stats, disc_ret, ret_stats, ep_ret, key), jnp.nanmean(finished)

        carry, returns = jax.lax.scan(update, carry, None, num_updates)
        return returns[-1]

    return train, num_updates * n * t


def main() -> None:
    """Compiles, times one run of the compiled program, prints the JSON line."""
    settings = json.loads(sys.argv[1])
    train, steps = make_train(settings)
    start = time.perf_counter()
    compiled = jax.jit(train).lower(jax.random.PRNGKey(settings.get("seed", 0))).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    final_return = float(jax.block_until_ready(compiled(jax.random.PRNGKey(settings.get("seed", 0)))))
    seconds = time.perf_counter() - start
    print(json.dumps({"sps": steps / seconds, "compile_s": compile_s, "return": final_return}))


if __name__ == "__main__":
    main()
