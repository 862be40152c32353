"""Brax's own PPO (`brax.training.agents.ppo.train`) on a Brax env, for bench/peers.py.

brax 0.14.2's trainer calls `jax.device_put_replicated`, which jax 0.10
removed; `device_put_replicated` below puts it back (a leading device axis,
sharded over those devices, as the old function returned). Its mesh axis
must be Brax's pmap axis name, "i": under any other name jax 0.10's pmap
(built on jit) compiles the training epoch a second time at the second call
(JAX_LOG_COMPILES=1 shows it). Brax times each training epoch itself
(`training/sps`, evaluations excluded); the first includes compilation, so
the figure is over the later epochs.

    python bench/peers/brax_ppo.py '{"env": "humanoid", "backend": "spring", "total_timesteps": 300000, ...}'

Prints one JSON line: {"sps": env steps/s over epochs 2.., "return": the last
evaluation's mean episode reward, "epoch_sps": every epoch's steps/s, "evals":
[env step, seconds since the trainer was called, eval return] per evaluation}.
"""

from __future__ import annotations

import functools
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def device_put_replicated(x, devices):
    """`x` stacked once per device along a new leading axis, each slice on its device."""
    sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(devices), ("i",)), jax.sharding.PartitionSpec("i"))
    return jax.tree.map(lambda a: jax.device_put(jnp.stack([a] * len(devices)), sharding), x)


def main() -> None:
    """Trains with settings from argv[1] (keys as in bench/peers.py), prints the JSON line."""
    jax.device_put_replicated = device_put_replicated
    from brax import envs
    from brax.training.agents.ppo import networks, train

    c = json.loads(sys.argv[1])
    epochs = c["num_chunks"]
    progress, start = [], time.perf_counter()
    train.train(
        environment=envs.get_environment(c["env"], backend=c["backend"]),
        num_timesteps=c["total_timesteps"], num_evals=epochs + 1, num_envs=c["num_envs"],
        episode_length=c["episode_length"], unroll_length=c["rollout_length"],
        batch_size=c["num_envs"] // c["num_minibatches"], num_minibatches=c["num_minibatches"],
        num_updates_per_batch=c["num_epochs"], learning_rate=c["lr"], entropy_cost=c["ent_coef"],
        discounting=c["gamma"], gae_lambda=c["gae_lambda"], clipping_epsilon=c["clip_eps"],
        vf_loss_coefficient=c["vf_coef"], max_grad_norm=c["max_grad_norm"], reward_scaling=c["reward_scaling"],
        normalize_observations=True, num_eval_envs=c["eval_episodes"], deterministic_eval=True, seed=c["seed"],
        network_factory=functools.partial(
            networks.make_ppo_networks, policy_hidden_layer_sizes=tuple(c["hidden"]),
            value_hidden_layer_sizes=tuple(c["hidden"]), activation=jax.nn.silu,
        ),
        progress_fn=lambda step, metrics: progress.append(
            {"step": int(step), "wall_s": time.perf_counter() - start, **{k: float(v) for k, v in metrics.items()}}
        ),
    )
    rates = [m["training/sps"] for m in progress if "training/sps" in m]
    print(json.dumps({
        "sps": len(rates[1:]) / sum(1 / r for r in rates[1:]),
        "return": progress[-1]["eval/episode_reward"],
        "epoch_sps": rates,
        "evals": [[m["step"], round(m["wall_s"], 1), m["eval/episode_reward"]] for m in progress],
    }))


if __name__ == "__main__":
    main()
