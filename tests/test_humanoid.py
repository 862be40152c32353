"""The humanoid learns: experiment=humanoid_cpu, on a budget the suite affords,
ends far above what a random policy earns on the same env."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from conftest import run_cli
from jaxrl.envs import make_env
from jaxrl.video import rollout

# 175 PPO updates of the preset (128 envs x 32 steps, 716,800 env steps): about 5 minutes on 2
# cores, compilation included. The humanoid learns slowly at first: a uniform random policy already
# earns about 480 (it flails for about 100 steps before it falls), and the preset's deterministic
# policy passes that clearly only after about 700k steps (seed 0 on the development machine:
# 779 at 573k steps, 1,212 at 717k, 1,333 at 860k, 2,236 at 1M).
BUDGET = ["total_timesteps=716800", "num_logs=1", "eval.episodes=8", "logger=none", "video.enabled=false"]


def random_policy_returns(episodes: int) -> np.ndarray:
    """Returns of `episodes` episodes of a uniform random policy (actions uniform over the whole
    normalised box [-1, 1]^action_dim) on the preset's env (positional humanoid), keys 0.."""
    env = make_env("brax", "humanoid", backend="positional")

    def uniform_random(obs, key):
        del obs
        return jax.random.uniform(key, (env.spec.action_dim,), minval=-1.0, maxval=1.0)

    return np.array([float(rollout(env, uniform_random, jax.random.PRNGKey(i))[1].reward.sum()) for i in range(episodes)])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_humanoid_cpu_learns_well_beyond_a_random_policy(tmp_path):
    proc = run_cli(["experiment=humanoid_cpu", "seed=0", *BUDGET, "run_dir=run"], cwd=tmp_path, timeout=780)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads((tmp_path / "run" / "summary.json").read_text())["final"]["eval/return_mean"][0]
    random = random_policy_returns(8)
    # measured on the 2-core development machine: random 483 (8 episodes, keys 0-7; 414 to 545),
    # trained 1,023 (8 episodes, std 153; its evaluation episodes differ from the curve's, which had 1,212 here)
    assert trained > 1.5 * random.mean(), (trained, random)
