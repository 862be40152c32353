"""The env contract on the three adapters: shapes, dtypes, auto-reset, termination vs truncation."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_cli
from jaxrl.envs import make_env
from jaxrl.envs.base import EnvSpec, RenderUnavailable, scale_action
from jaxrl.errors import ConfigError


def run_steps(env, policy, steps: int, key=jax.random.PRNGKey(0)):
    """Jitted scan of one env for `steps` steps with `policy(obs) -> action`; returns stacked TimeSteps."""

    @jax.jit
    def go(key):
        state, obs = env.reset(key)

        def body(carry, k):
            state, obs = carry
            state, ts = env.step(k, state, policy(obs))
            return (state, ts.obs), ts

        return jax.lax.scan(body, (state, obs), jax.random.split(key, steps))[1]

    return jax.device_get(go(key))


def test_gymnax_spec_and_time_limit_truncates():
    env = make_env("gymnax", "MountainCarContinuous-v0")
    assert env.spec.obs_shape == (2,) and env.spec.action_dim == 1 and not env.spec.discrete
    assert env.spec.max_episode_steps == 999
    ts = run_steps(env, lambda obs: jnp.zeros(1), 1000)
    assert ts.obs.dtype == np.float32 and ts.obs.shape == (1000, 2)
    assert ts.reward.dtype == np.float32 and ts.terminated.dtype == bool
    # doing nothing never reaches the flag: the episode hits the limit at step 999
    done_at = np.flatnonzero(ts.done)
    assert list(done_at) == [998]
    assert ts.truncated[998] and not ts.terminated[998]
    assert ts.episode_length[998] == 999
    # auto-reset: the next observation starts a new episode near the valley, at rest,
    # while final_obs is where the old episode stopped
    assert ts.obs[998][1] == 0.0 and -0.6 <= ts.obs[998][0] <= -0.4
    assert not np.array_equal(ts.final_obs[998], ts.obs[998])
    assert np.array_equal(ts.final_obs[:998], ts.obs[:998])


def test_gymnax_goal_terminates_with_episode_stats():
    env = make_env("gymnax", "MountainCarContinuous-v0")
    # pushing along the velocity pumps energy and reaches the flag
    ts = run_steps(env, lambda obs: jnp.where(obs[1] >= 0, 1.0, -1.0)[None], 400)
    first = int(np.flatnonzero(ts.done)[0])
    assert ts.terminated[first] and not ts.truncated[first]
    assert ts.final_obs[first][0] >= 0.45
    expected = ts.reward[: first + 1].sum()
    assert ts.episode_return[first] == pytest.approx(expected, rel=1e-5)
    assert ts.episode_return[first] > 80  # 100 at the flag minus 0.1 per full-throttle step
    assert ts.episode_length[first] == first + 1


def test_gymnax_discrete_actions():
    env = make_env("gymnax", "MountainCar-v0")
    assert env.spec.discrete and env.spec.action_dim == 3 and env.spec.max_episode_steps == 200
    ts = run_steps(env, lambda obs: jnp.int32(1), 200)
    assert ts.truncated[199] and ts.done.sum() == 1
    assert ts.episode_return[199] == -200


def test_image_observations_are_flattened_and_time_limits_settable():
    env = make_env("gymnax", "Breakout-MinAtar", episode_length=3)
    assert env.spec.obs_shape == (400,) and env.spec.discrete and env.spec.max_episode_steps == 3
    ts = run_steps(env, lambda obs: jnp.int32(1), 3)
    assert ts.obs.shape == (3, 400) and ts.final_obs.shape == (3, 400)


def test_a_time_limit_keeps_the_type_of_the_envs_own():
    # BernoulliBandit-misc's limit is a float, and its state's dtypes follow it: an int one failed to trace
    env = make_env("gymnax", "BernoulliBandit-misc", episode_length=5)
    assert env.spec.max_episode_steps == 5
    ts = run_steps(env, lambda obs: jnp.int32(0), 10)
    assert list(np.flatnonzero(ts.truncated)) == [4, 9]


def test_gymnax_render_draws_the_envs_it_knows_and_names_them_for_others():
    env = make_env("gymnax", "MountainCarContinuous-v0")
    assert env.render_unavailable() is None
    states = jax.device_get(jax.vmap(lambda k: env.reset(k)[0])(jax.random.split(jax.random.PRNGKey(0), 3)))
    ts = run_steps(env, lambda obs: jnp.ones(1), 3)
    frames, fps = env.render(states, ts, width=120, height=90)
    # one frame per state, plus the car after the last step
    assert frames.shape == (4, 90, 120, 3) and frames.dtype == np.uint8 and fps == 30

    maze = make_env("gymnax", "MetaMaze-misc")
    assert "CartPole-v1, Pendulum-v1" in maze.render_unavailable()
    with pytest.raises(RenderUnavailable, match="no renderer for 'MetaMaze-misc'"):
        maze.render(states, ts)



def test_a_long_mountaincar_episode_is_drawn_every_kth_state_within_max_frames():
    # every frame is held in memory until encoded: a 100,000-step episode drawn whole would take 36 GB
    env = make_env("gymnax", "MountainCarContinuous-v0")
    ts = run_steps(env, lambda obs: jnp.ones(1), 30)
    states = jax.device_get(jax.vmap(lambda k: env.reset(k)[0])(jax.random.split(jax.random.PRNGKey(0), 30)))
    whole, _ = env.render(states, ts, width=120, height=90, max_frames=30)  # 30 steps: drawn whole
    frames, fps = env.render(states, ts, width=120, height=90, max_frames=10)
    # 31 positions (30 states and the car after the last step), k = ceil(30 / 10) = 3: 0, 3, ..., 30
    assert len(whole) == 31 and len(frames) == 11 and fps == 30 / 3
    np.testing.assert_array_equal(frames, whole[::3])
    frames, fps = env.render(states, ts, width=120, height=90, max_frames=8)  # k = 4, the last kept
    assert fps == 30 / 4
    np.testing.assert_array_equal(frames, whole[[0, 4, 8, 12, 16, 20, 24, 28, 30]])

SEABORN_ON_FIRST_USE = """
import sys
from jaxrl.envs import make_env
make_env("gymnax", "Pong-misc")
assert "seaborn" not in sys.modules, "importing gymnax loaded seaborn"
import jax
import gymnax
env, params = gymnax.make("Pong-misc")
_, state = env.reset(jax.random.PRNGKey(0), params)
env.render(state, params)  # gymnax's own Pong renderer, which colours its channels with seaborn
import seaborn
assert type(seaborn).__name__ == "module" and seaborn.color_palette("cubehelix", 2)
"""


def test_gymnax_starts_without_seaborn_and_its_pong_renderer_still_draws_with_it():
    # a fresh interpreter: this one may hold seaborn already
    done = subprocess.run([sys.executable, "-c", SEABORN_ON_FIRST_USE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_unknown_env_names_are_listed():
    with pytest.raises(ValueError, match="unknown gymnax env 'MountainCar-v9'.*MountainCar-v0"):
        make_env("gymnax", "MountainCar-v9")
    with pytest.raises(ValueError, match="unknown brax env 'humanoidd'.*humanoid"):
        make_env("brax", "humanoidd")
    with pytest.raises(ValueError, match="unknown playground env 'HumanoidWalkk'.*HumanoidWalk"):
        make_env("playground", "HumanoidWalkk")


def test_a_gymnax_env_whose_data_cannot_be_downloaded_is_refused_in_one_line(monkeypatch):
    # MNISTBandit-bsuite downloads MNIST when built; here the download fails as it does offline
    import urllib.error

    from gymnax.utils import load_mnist

    def offline(url, filename, directory="/tmp/mnist"):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(load_mnist, "_download", offline)
    with pytest.raises(ConfigError, match=r"gymnax could not build 'MNISTBandit-bsuite'.*URLError.*/tmp/mnist"):
        make_env("gymnax", "MNISTBandit-bsuite")


@pytest.mark.parametrize(
    ("suite", "name", "other"),
    [("gymnax", "ant", "brax"), ("brax", "CartPole-v1", "gymnax"), ("gymnax", "CartpoleBalance", "playground")],
)
def test_an_env_name_of_another_suite_says_which_group_to_give(suite, name, other):
    # `env.name=ant` alone keeps the default env group's suite, gymnax
    with pytest.raises(ValueError, match=f"^unknown {suite} env '{name}'; it is a {other} env: give env={other} env.name={name}$"):
        make_env(suite, name)
    with pytest.raises(ValueError, match="unknown playground impl env.backend='mjx'; choose one of: jax, warp"):
        make_env("playground", "CartpoleBalance", backend="mjx")
    with pytest.raises(ValueError, match="'AeroCubeRotateZAxis' has no choice of MJX implementation; leave env.backend at jax"):
        make_env("playground", "AeroCubeRotateZAxis", backend="warp")
    with pytest.raises(ValueError, match="unknown env.suite 'dm_control'"):
        make_env("dm_control", "cheetah")


def test_scale_action_rescales_and_clips():
    spec = EnvSpec(obs_shape=(1,), action_dim=2, discrete=False, action_low=(-0.4, 0.0), action_high=(0.4, 2.0), max_episode_steps=1)
    out = scale_action(spec, jnp.array([[-1.0, 1.0], [0.0, 0.0], [5.0, -5.0]]))
    np.testing.assert_allclose(out, [[-0.4, 2.0], [0.0, 1.0], [0.4, 0.0]], atol=1e-6)


def test_brax_humanoid_contract():
    env = make_env("brax", "humanoid", backend="positional", episode_length=30)
    assert env.spec.obs_shape == (244,) and env.spec.action_dim == 17
    assert env.spec.action_low[0] == pytest.approx(-0.4) and env.spec.action_high[0] == pytest.approx(0.4)
    ts = run_steps(env, lambda obs: jnp.zeros(17), 70)
    assert ts.obs.shape == (70, 244) and ts.obs.dtype == np.float32
    assert np.isfinite(ts.obs).all() and np.isfinite(ts.reward).all()
    ends = np.flatnonzero(ts.done)
    assert len(ends) >= 2
    # every episode ends by falling (terminated) or at the 30-step limit (truncated), never both
    assert not (ts.terminated & ts.truncated).any()
    assert all(ts.episode_length[e] <= 30 for e in ends)
    assert all(ts.truncated[e] == (ts.episode_length[e] == 30 and not ts.terminated[e]) for e in ends)
    # after an end the episode counters restart
    first = ends[0]
    assert ts.episode_length[first + 1] == 1


def test_mujoco_warnings_are_python_warnings_not_a_file_in_the_working_directory(tmp_path, monkeypatch):
    # Brax's halfcheetah model uses an attribute MuJoCo deprecates; MuJoCo's own
    # handler would write its warning to MUJOCO_LOG.TXT in the working directory
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="MuJoCo: compiler attribute 'settotalmass' is deprecated"):
        make_env("brax", "halfcheetah")
    assert list(tmp_path.iterdir()) == []


def test_playground_contract():
    # The Control Suite's cartpole never terminates: every episode is truncated.
    env = make_env("playground", "CartpoleBalance", episode_length=30)
    assert env.spec.obs_shape == (5,) and env.spec.action_dim == 1
    assert (env.spec.action_low, env.spec.action_high) == ((-1.0,), (1.0,))
    ts = run_steps(env, lambda obs: jnp.ones(1), 70)
    assert ts.obs.shape == (70, 5) and ts.obs.dtype == np.float32 and np.isfinite(ts.obs).all()
    assert list(np.flatnonzero(ts.done)) == [29, 59]
    assert ts.truncated[[29, 59]].all() and not ts.terminated.any()
    assert ts.episode_length[29] == 30 and ts.episode_length[30] == 1
    # the pre-reset observation is kept for bootstrapping: pushed right for 30
    # steps, the cart is far from where the next episode starts
    assert ts.final_obs[29, 0] > 0.4 and abs(ts.obs[29, 0]) < 0.1
    assert 0 < ts.episode_return[29] <= 30  # Control Suite rewards are in [0, 1]
    assert make_env("playground", "CartpoleBalance").spec.max_episode_steps == 1000  # the suite's own limit


def test_a_playground_task_whose_robot_models_cannot_be_fetched_is_refused_in_one_line(tmp_path):
    # Playground clones MuJoCo Menagerie with git on first use; here git fails as it does offline.
    from mujoco_playground._src import mjx_env

    if mjx_env.MENAGERIE_PATH.exists():
        pytest.skip(f"Menagerie is already at {mjx_env.MENAGERIE_PATH}: nothing to fetch")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "git").write_text("#!/bin/sh\necho 'fatal: unable to access github.com' >&2\nexit 128\n")
    (fake_bin / "git").chmod(0o755)
    proc = run_cli(
        ["env=playground", "env.name=Go1JoystickFlatTerrain", "run_dir=run"], tmp_path,
        PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "needs robot models from MuJoCo Menagerie" in errors[0]
    assert str(mjx_env.MENAGERIE_PATH) in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists() and not mjx_env.MENAGERIE_PATH.exists()
