"""PureJaxRL's own PPO (purejaxrl/ppo_continuous_action.py), run from a checkout of it.

Its `make_train` is used as it is; only its env is swapped, as PureJaxRL's
README suggests for other envs: the script builds a Brax env through
`BraxGymnaxWrapper(ENV_NAME)`, which is replaced here by gymnax's
MountainCarContinuous-v0 behind the same interface (default params, and
gymnax 1.0's terminated/truncated pair folded into PureJaxRL's one `done`).
`wrappers.py` imports navix for its MiniGrid wrapper, which this env does not
use, so an empty module stands in for it when navix is not installed.
Written for bench/peers.py, which runs it with XLA_FLAGS as the user has it.

    python bench/peers/purejaxrl_ppo.py '{"purejaxrl": "<checkout>", "total_timesteps": 262144, "num_envs": 16, ...}'

Prints one JSON line: {"sps": env steps/s of the compiled call, "compile_s": ...,
"return": mean return of the episodes finished in the last update}.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import gymnax
import jax
import numpy as np


class GymnaxAsBrax:
    """A gymnax env behind PureJaxRL's BraxGymnaxWrapper interface: params may
    be None, and `step` returns (obs, state, reward, done, info)."""

    def __init__(self, name: str):
        self.env, self.params = gymnax.make(name)

    def reset(self, key, params=None):
        """(obs [obs_dim], state) of a new episode."""
        return self.env.reset(key, self.params)

    def step(self, key, state, action, params=None):
        """One step; done is terminated or truncated, as PureJaxRL's gymnax predates the split."""
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, self.params)
        return obs, state, reward, terminated | truncated, info

    def observation_space(self, params=None):
        """The env's observation space."""
        return self.env.observation_space(self.params)

    def action_space(self, params=None):
        """The env's action space."""
        return self.env.action_space(self.params)


def main() -> None:
    """Compiles PureJaxRL's train function, times one run of it, prints the JSON line."""
    s = json.loads(sys.argv[1])
    source = Path(s["purejaxrl"]) / "purejaxrl"
    sys.path.insert(0, str(source))  # the script imports its `wrappers` as a top-level module
    if importlib.util.find_spec("navix") is None:
        sys.modules["navix"] = types.ModuleType("navix")
    import ppo_continuous_action as purejaxrl

    purejaxrl.BraxGymnaxWrapper = GymnaxAsBrax
    config = {
        "LR": s["lr"], "NUM_ENVS": s["num_envs"], "NUM_STEPS": s["rollout_length"], "TOTAL_TIMESTEPS": s["total_timesteps"],
        "UPDATE_EPOCHS": s["num_epochs"], "NUM_MINIBATCHES": s["num_minibatches"], "GAMMA": s["gamma"],
        "GAE_LAMBDA": s["gae_lambda"], "CLIP_EPS": s["clip_eps"], "ENT_COEF": s["ent_coef"], "VF_COEF": s["vf_coef"],
        "MAX_GRAD_NORM": s["max_grad_norm"], "ACTIVATION": "tanh", "ENV_NAME": "MountainCarContinuous-v0",
        "ANNEAL_LR": s["anneal_lr"], "NORMALIZE_ENV": True, "DEBUG": False,
    }
    key = jax.random.PRNGKey(s.get("seed", 0))
    start = time.perf_counter()
    compiled = jax.jit(purejaxrl.make_train(config)).lower(key).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = jax.block_until_ready(compiled(key))["metrics"]
    seconds = time.perf_counter() - start
    steps = config["NUM_UPDATES"] * config["NUM_ENVS"] * config["NUM_STEPS"]  # make_train sets NUM_UPDATES
    ended = np.asarray(metrics["returned_episode"][-1])
    returns = np.asarray(metrics["returned_episode_returns"][-1])
    print(json.dumps({"sps": steps / seconds, "compile_s": compile_s,
                      "return": float(returns[ended].mean()) if ended.any() else float("nan")}))


if __name__ == "__main__":
    main()
