"""Stable-Baselines3 (PyTorch, CPU) or SBX (JAX) PPO/SAC on gymnasium MountainCarContinuous-v0.

Run by bench/peers.py in the peers' virtualenv. One untimed warm-up `learn`
(SBX compiles its update there; for SAC it also covers learning_starts), then
`learn` of the rest of the budget, timed, continuing the same model.

    python bench/peers/sb3_run.py '{"lib": "sb3", "algo": "sac", "total_timesteps": 20000, ...}'

Prints one JSON line: {"sps": env steps/s of the timed learn, "warmup_s": ..., "torch_threads": ...}.
"""

from __future__ import annotations

import json
import sys
import time

import gymnasium as gym
import torch


def make_model(c: dict):
    """The SB3 or SBX model for settings `c` (keys as in bench/peers.py)."""
    if c["lib"] == "sbx":
        import sbx as lib
    else:
        import stable_baselines3 as lib
    if c["algo"] == "ppo":
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize

        env = VecNormalize(make_vec_env("MountainCarContinuous-v0", n_envs=1, seed=c["seed"]), norm_reward=False, clip_obs=10.0)
        return lib.PPO(
            "MlpPolicy", env, n_steps=c["rollout_length"], batch_size=c["minibatch_size"], n_epochs=c["num_epochs"],
            learning_rate=lambda remaining: c["lr"] * remaining, gamma=c["gamma"], gae_lambda=c["gae_lambda"],
            clip_range=c["clip_eps"], ent_coef=c["ent_coef"], vf_coef=c["vf_coef"], max_grad_norm=c["max_grad_norm"],
            policy_kwargs={"net_arch": {"pi": c["hidden"], "vf": c["hidden"]}}, seed=c["seed"], device="cpu",
        )
    return lib.SAC(
        "MlpPolicy", gym.make("MountainCarContinuous-v0"), buffer_size=c["buffer_size"],
        learning_starts=c["learning_starts"], batch_size=c["batch_size"], train_freq=1, gradient_steps=1,
        learning_rate=c["lr"], gamma=c["gamma"], tau=c["tau"], policy_kwargs={"net_arch": c["hidden"]},
        seed=c["seed"], device="cpu",
    )


def main() -> None:
    """Warm-up learn, timed learn, one JSON line."""
    c = json.loads(sys.argv[1])
    if c.get("torch_threads"):
        torch.set_num_threads(c["torch_threads"])
    model = make_model(c)
    start = time.perf_counter()
    model.learn(c["warmup_steps"])
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    model.learn(c["total_timesteps"] - c["warmup_steps"], reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    steps = model.num_timesteps - c["warmup_steps"]
    print(json.dumps({"sps": steps / seconds, "warmup_s": warmup_s, "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
