"""Videos of a policy: rollout, gymnax drawings, Brax/MuJoCo rendering, mp4 files.

The drawers live beside the adapters (`jaxrl.envs.*_render`); they are tested
here through `record_episode`, which asks the env to draw.

The Brax tests run in a subprocess because MuJoCo picks its OpenGL platform
once, when it is first imported (MUJOCO_GL): each test needs its own choice,
whatever the rest of the session imported before.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ProbeEnv
from jaxrl import host
from jaxrl.envs.base import RenderUnavailable
from jaxrl.envs.gymnax_env import GymnaxEnv
from jaxrl.envs.gymnax_render import (
    BODY,
    ENVS,
    GOAL,
    acrobot_frames,
    board_frames,
    cartpole_frames,
    mountaincar_frames,
    pendulum_frames,
    pointrobot_frames,
    reacher_frames,
    swimmer_frames,
)
from jaxrl.video import (
    VideoResult,
    record_episode,
    rollout,
    write_mp4,
)

REPO = Path(__file__).resolve().parents[1]

# subprocess.run forks and execs at once, which is safe; JAX's fork warning is noise here.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def pump(obs, key):
    """Energy pumping: push the way the car already moves; [1] in [-1, 1]."""
    del key
    return jnp.where(obs[1] >= 0.0, 1.0, -1.0)[None]


def read_mp4(path):
    reader = imageio.get_reader(path, "ffmpeg")
    try:
        # Not list(reader): its len() is inf for a stream, and list() preallocates.
        return np.stack([frame for frame in reader]), reader.get_meta_data()["fps"]
    finally:
        reader.close()


def test_mountaincar_episode_reaches_the_goal_and_becomes_an_mp4(tmp_path):
    env = GymnaxEnv("MountainCarContinuous-v0")
    states, steps = rollout(env, pump, jax.random.key(0))
    length = steps.reward.shape[0]
    assert steps.terminated[-1] and not steps.done[:-1].any()  # cut at the first end
    assert states.inner.position.shape == (length,)
    assert steps.final_obs[-1, 0] >= env.params.goal_position

    result = record_episode(env, pump, jax.random.key(0), tmp_path / "videos", "mcc", fps=25)

    assert isinstance(result, VideoResult) and result.reason is None and result.html is None
    assert result.mp4 == tmp_path / "videos" / "mcc.mp4"
    assert result.episode_length == length and result.episode_return > 80
    frames, fps = read_mp4(result.mp4)
    # One frame per state before each step, plus the car at the flag.
    assert result.num_frames == length + 1 == frames.shape[0]
    assert frames.shape[1:] == (300, 400, 3) and fps == 25
    # Pixels follow the car: frames change where it moved and stay put where it
    # did not (gymnax 1.0.1 keeps a negative velocity at the left bound, so this
    # policy leaves the car resting against x = -1.2 for a while).
    positions = np.append(states.inner.position, steps.final_obs[-1, 0])
    moved = np.abs(np.diff(positions)) > 0.005  # about a pixel
    still = np.abs(np.diff(positions)) < 1e-6
    change = np.abs(frames[1:].astype(int) - frames[:-1].astype(int)).mean(axis=(1, 2, 3))
    assert moved.mean() > 0.5
    assert (change[moved] > 0.01).mean() > 0.95
    assert (change[still] < 0.01).all()
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 100


def test_mountaincar_frames_differ_where_the_car_is():
    frames = mountaincar_frames(np.array([-1.0, 0.4, -1.0]))
    assert frames.shape == (3, 300, 400, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], frames[2])
    columns = np.nonzero((frames[0] != frames[1]).any(axis=(0, 2)))[0]
    assert columns.size > 0
    scale = 400 / 1.8
    car_x = {pos: (pos + 1.2) * scale for pos in (-1.0, 0.4)}
    # Every changed column lies within a car's length of one of the two cars.
    near = np.minimum(abs(columns - car_x[-1.0]), abs(columns - car_x[0.4]))
    assert near.max() < 0.15 * scale
    assert (abs(columns - car_x[-1.0]) < 0.15 * scale).any() and (abs(columns - car_x[0.4]) < 0.15 * scale).any()
    # a flat frame shrinks the scene to fit its height rather than cropping the car off
    (flat,) = mountaincar_frames(np.array([-0.5]), width=400, height=90)
    assert (flat == 0).all(axis=-1).sum() > 20


def test_discrete_mountaincar_and_other_gymnax_envs(tmp_path):
    env = GymnaxEnv("MountainCar-v0")
    result = record_episode(env, lambda obs, key: jnp.where(obs[1] >= 0, 2, 0), jax.random.key(1), tmp_path, "mc")
    assert result.mp4 is not None and result.num_frames == result.episode_length + 1

    maze = GymnaxEnv("MetaMaze-misc")  # its observation is the agent's surroundings only: nothing to draw from
    result = record_episode(maze, lambda obs, key: jnp.int32(0), jax.random.key(0), tmp_path, "maze", max_steps=5)
    assert result.mp4 is None and result.html is None and "MetaMaze-misc" in result.reason
    assert "CartPole-v1" in result.reason  # it names the envs that can be filmed
    assert result.episode_length == 0 and np.isnan(result.episode_return)
    assert not list(tmp_path.glob("maze*"))


def test_a_run_on_an_env_without_a_drawer_says_so_once(tmp_path):
    import warnings

    import jaxrl

    overrides = ["env=gymnax", "env.name=MetaMaze-misc", "algo.num_envs=4", "algo.rollout_length=8", "algo.hidden=[16]",
                 "algo.num_minibatches=2", "total_timesteps=96", "num_logs=3", "eval.every=1", "eval.episodes=1",
                 "env.episode_length=20", "video.every=1", "logger=none", "checkpoint.enabled=false"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jaxrl.run(seeds=1, overrides=overrides, run_dir=tmp_path / "run")
    # three films asked for (two evaluations filmed, then the final one), one warning
    said = [str(w.message) for w in caught if str(w.message).startswith("no video")]
    assert len(said) == 1 and "no renderer for 'MetaMaze-misc'" in said[0], said


def random_action(env):
    """A uniformly random action of `env`, as `(obs, key) -> action`."""
    if env.spec.discrete:
        return lambda obs, key: jax.random.randint(key, (), 0, env.spec.action_dim)
    return lambda obs, key: jax.random.uniform(key, (env.spec.action_dim,), minval=-1.0, maxval=1.0)


def test_every_gymnax_env_with_a_drawer_films_an_episode(tmp_path):
    # classic control and the board games alike: an mp4 of every state, the final one included
    assert {"CartPole-v1", "Pendulum-v1", "Acrobot-v1", "Breakout-MinAtar", "Catch-bsuite"} <= set(ENVS)
    for name in ENVS:
        env = GymnaxEnv(name)
        result = record_episode(env, random_action(env), jax.random.key(3), tmp_path, name, max_steps=12)
        assert result.reason is None and result.mp4 is not None, name
        frames, _ = read_mp4(result.mp4)
        assert frames.shape[0] == result.num_frames == result.episode_length + 1, name
        # something moves: a frozen picture would pass every shape check (a random walk may end where it began)
        assert np.abs(frames[1:].astype(int) - frames[0].astype(int)).max() > 100, name


def dark(frame, colour, tolerance=40):
    """Column and row centroids of the pixels of `colour` in `frame` [H, W, 3]."""
    rows, cols = np.nonzero((np.abs(frame.astype(int) - colour) < tolerance).all(axis=-1))
    assert rows.size > 0, f"no pixel of {colour}"
    return cols.mean(), rows.mean()


def test_classic_control_scenes_follow_the_state():
    cartpole = GymnaxEnv("CartPole-v1")
    # x left and right of the centre; the pole upright, then leaning right (theta > 0)
    frames = cartpole_frames(np.array([[-1.5, 0, 0, 0], [1.5, 0, 0.5, 0]]), cartpole.params)
    assert frames.shape == (2, 400, 600, 3)
    # the cart: the black columns taller than the track's one-pixel line
    cart = [np.nonzero((f == 0).all(axis=-1).sum(axis=0) > 5)[0].mean() for f in frames]
    assert cart[0] < 300 - 100 and cart[1] > 300 + 100
    pole = [dark(f, (202, 152, 101)) for f in frames]
    assert abs(pole[0][0] - cart[0]) < 3 and pole[1][0] > cart[1] + 10

    pendulum = GymnaxEnv("Pendulum-v1")
    # theta 0 is upright: the rod above its axle; theta pi hangs below it; theta
    # pi/2 points left (gym turns it counter-clockwise), a mirror image would point right
    obs = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0]])
    up, down, left = (dark(f, (204, 77, 77)) for f in pendulum_frames(obs, pendulum.params, 200, 200))
    assert up[1] < 100 < down[1] and left[0] < 100 - 20

    acrobot = GymnaxEnv("Acrobot-v1")
    # both joints at 0 hang straight down; the first at pi stands straight up; the
    # first at pi/2 holds the arm out to the right, the second then at pi/2 turns it up
    obs = np.array([[1.0, 0, 1, 0, 0, 0], [-1.0, 0, 1, 0, 0, 0], [0, 1.0, 1, 0, 0, 0], [0, 1.0, 0, 1.0, 0, 0]])
    hanging, standing, right, bent = (dark(f, (0, 204, 204)) for f in acrobot_frames(obs, acrobot.params))
    assert hanging[1] > 250 > standing[1] and abs(hanging[0] - 250) < 3
    assert right[0] > 250 + 50 and abs(right[1] - 250) < 3
    assert bent[0] > 250 and bent[1] < 250 - 20
    # a size given by one side keeps the scene's shape
    assert cartpole_frames(np.zeros((1, 4)), cartpole.params, width=300).shape == (1, 200, 300, 3)


def test_misc_scenes_follow_the_state():
    # y points up in every scene; the centre of the 500x500 ones is (250, 250)
    # Reacher: the first link at angle 0 (to the right), the second at pi/2 (up): the tip at (1, 1)
    # from the centre, links of 250 / 2.3 pixels; the goal at (-1, -1)
    (arm,) = reacher_frames(np.array([[1.0, 0, 0, 1.0, 0, 0, -1.0, -1.0]]))
    link = 250 / 2.3
    body, goal = dark(arm, BODY), dark(arm, GOAL)
    assert 250 < body[0] < 250 + link and 250 - link < body[1] < 250  # right of the centre, and up
    assert abs(goal[0] - (250 - link)) < 2 and abs(goal[1] - (250 + link)) < 2
    # Swimmer: the swimmer at (1, 0), the goal at (0, 1), one urchin at (-1, 0); 125 pixels a unit
    (pool,) = swimmer_frames(np.array([[-1.0, 0, 1.0, 0, 0, 0, 0, 1.0]]))
    for (x, y), (col, row) in (((375, 250), dark(pool, BODY)), ((250, 125), dark(pool, GOAL)), ((125, 250), dark(pool, (60, 60, 60)))):
        assert abs(col - x) < 2 and abs(row - y) < 2
    # PointRobot (600x400, the arc's centre at (300, 300) in pixels, 200 a unit): the robot at (0.5, 0.5),
    # in the goal's colour on the step that found the goal
    robot = GymnaxEnv("PointRobot-misc")
    searching, found = pointrobot_frames(np.array([[0.5, 0.5, 0, 0, 0, 0], [0.5, 0.5, 1.0, 0, 0, 0]]), robot.params)
    col, row = dark(searching, BODY)
    assert abs(col - 400) < 2 and abs(row - 200) < 2
    assert not (np.abs(found.astype(int) - BODY) < 40).all(axis=-1).any()


def test_grid_worlds_show_the_agent_in_the_cell_its_state_names():
    # FourRooms (13x13, 30-pixel cells) and FrozenLake (4x4, 100-pixel cells): the agent in tab10's green, at
    # the start from the state and at the end from final_obs (the env has reset by then)
    green = (44, 160, 44)
    for name, cell, first_cell, last_cell in (
        ("FourRooms-misc", 30, lambda s: s.inner.pos[0][::-1], lambda obs: obs[1::-1]),
        ("FrozenLake-misc", 100, lambda s: divmod(int(s.inner.position[0]), 4), lambda obs: divmod(int(obs[0]), 4)),
    ):
        env = GymnaxEnv(name)
        states, steps = rollout(env, random_action(env), jax.random.key(5), max_steps=12)
        frames, _ = env.render(states, steps)
        for frame, (row, col) in ((frames[0], first_cell(states)), (frames[-1], last_cell(steps.final_obs[-1]))):
            x, y = dark(frame, green)
            assert (int(y // cell), int(x // cell)) == (int(row), int(col)), name


def test_a_board_cell_takes_its_channels_colour():
    obs = np.zeros((1, 10, 10, 4))
    obs[0, 2, 3, 1] = 1  # channel 1 alone at row 2, column 3
    obs[0, 7, 7, [0, 3]] = 1  # two channels: the last one's colour
    (frame,) = board_frames(obs)
    assert frame.shape == (400, 400, 3)  # 40-pixel cells
    cell = lambda r, c: frame[r * 40 + 5 : r * 40 + 35, c * 40 + 5 : c * 40 + 35].reshape(-1, 3)
    first, last = np.unique(cell(2, 3), axis=0), np.unique(cell(7, 7), axis=0)
    assert len(first) == 1 and len(last) == 1 and (first != last).any()
    assert (np.unique(cell(0, 0), axis=0) == 0).all()  # empty cells are black
    # a [H, W] board (Catch) at a size of the caller's: cells as large as fit, centred
    (frame,) = board_frames(np.eye(10, 5)[None], width=100, height=300)
    assert frame.shape == (300, 100, 3) and frame[50:70].any() and not frame[:50].any()
    # a frame smaller than the board shows its middle
    assert board_frames(obs, width=7, height=5).shape == (1, 5, 7, 3)
    # an empty board (DeepSea's diver has left it on the last step) shows the one before
    boards = np.zeros((2, 8, 8))
    boards[0, 7, 3] = 1
    shown = board_frames(boards)
    np.testing.assert_array_equal(shown[1], shown[0])


def test_the_last_frame_shows_the_state_the_episode_ended_in():
    # the env resets on the last step: the state it ended in survives only as final_obs
    env = GymnaxEnv("CartPole-v1")
    states, steps = rollout(env, lambda obs, key: jnp.int32(1), jax.random.key(2))
    frames, _ = env.render(states, steps)
    assert abs(steps.final_obs[-1, 2]) > env.params.theta_threshold_radians  # the pole fell
    np.testing.assert_array_equal(frames[-1], cartpole_frames(steps.final_obs[-1:], env.params)[0])
    np.testing.assert_array_equal(frames[-2], cartpole_frames(steps.final_obs[-2:-1], env.params)[0])


class BlindProbe(ProbeEnv):
    """A probe whose drawer cannot start, and which has no HTML viewer."""

    def render(self, states, steps, *, width=None, height=None, max_frames=250):
        raise RenderUnavailable("the probe's renderer is off")


def zero_action(obs, key):
    del obs, key
    return jnp.zeros(1)


def test_envs_that_cannot_draw_get_a_reason_and_no_file(tmp_path):
    # No render method at all: nothing is played.
    result = record_episode(ProbeEnv(truncate=False), zero_action, jax.random.key(0), tmp_path, "probe")
    assert result.mp4 is None and result.html is None and "'probe'" in result.reason
    assert result.episode_length == 0 and np.isnan(result.episode_return)
    # A renderer that fails once started: the episode was played, no file written.
    result = record_episode(BlindProbe(truncate=False), zero_action, jax.random.key(0), tmp_path, "blind")
    assert result.mp4 is None and result.html is None and result.reason == "the probe's renderer is off"
    assert result.episode_length == 1 and result.episode_return == 1.0
    assert not list(tmp_path.iterdir())


def test_recording_a_gymnax_env_loads_no_brax_or_mujoco(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        import jax, jax.numpy as jnp
        from jaxrl.envs.gymnax_env import GymnaxEnv
        from jaxrl.video import record_episode

        env = GymnaxEnv("MountainCar-v0")
        result = record_episode(env, lambda obs, key: jnp.int32(2), jax.random.key(0), sys.argv[1], "mc", max_steps=3)
        assert result.num_frames == 4, result
        print("LOADED", sorted({m.split(".")[0] for m in sys.modules} & {"brax", "mujoco"}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "LOADED []" in proc.stdout


def test_write_mp4_pads_odd_sides(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (4, 31, 45, 3), dtype=np.uint8)
    frames_back, _ = read_mp4(write_mp4(frames, tmp_path / "odd.mp4", fps=10))
    assert frames_back.shape == (4, 32, 46, 3)


def test_configure_picks_a_gl_platform(monkeypatch):
    for var in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    host.set_mujoco_gl()
    assert os.environ["MUJOCO_GL"] == "glfw" and "PYOPENGL_PLATFORM" not in os.environ  # the user's choice wins

    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setenv("PYOPENGL_PLATFORM", "osmesa")
    host.set_mujoco_gl()
    assert os.environ["MUJOCO_GL"] == "osmesa"

    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.delenv("PYOPENGL_PLATFORM")
    host.set_mujoco_gl()
    choice = host.choose_mujoco_gl()
    assert os.environ.get("MUJOCO_GL") == choice and os.environ.get("PYOPENGL_PLATFORM") == choice
    if ctypes.util.find_library("OSMesa") and not os.path.exists("/dev/nvidia0"):
        assert choice == "osmesa"


BRAX_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import jax, jax.numpy as jnp
    from jaxrl.envs.brax_env import BraxEnv
    from jaxrl.video import record_episode

    name, backend, steps, out_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    env = BraxEnv(name, backend, episode_length=steps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = record_episode(
            env, lambda obs, key: jnp.zeros(env.spec.action_dim), jax.random.key(0),
            out_dir, name, width=160, height=120,
        )
    print("RESULT" + json.dumps({
        "mp4": result.mp4 and str(result.mp4), "html": result.html and str(result.html),
        "num_frames": result.num_frames, "reason": result.reason,
        "episode_length": result.episode_length,
        "warnings": [str(w.message) for w in caught if "no video" in str(w.message)],
    }))
    """
)


def run_brax(tmp_path, env_vars, name, backend, steps):
    hidden = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(env_vars)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", BRAX_SCRIPT, name, backend, str(steps), str(tmp_path)],
        # In tmp_path: mujoco appends warnings to MUJOCO_LOG.TXT in the cwd.
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, f"subprocess failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT") :])


def test_brax_humanoid_renders_under_osmesa(tmp_path):
    if ctypes.util.find_library("OSMesa") is None:
        pytest.skip("libOSMesa not found (Debian/Ubuntu: apt-get install libosmesa6); cannot render Brax on a CPU")
    result = run_brax(tmp_path, {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}, "humanoid", "positional", 6)

    assert result["reason"] is None and result["warnings"] == []
    assert result["num_frames"] == result["episode_length"] == 6
    frames, _ = read_mp4(result["mp4"])
    assert frames.shape == (6, 120, 160, 3)
    assert frames.std() > 10, "a rendered scene, not a blank image"


def test_brax_without_opengl_writes_the_html_viewer(tmp_path):
    # What a headless machine without OSMesa/EGL does: mujoco's default (GLFW)
    # finds no display.
    result = run_brax(tmp_path, {"MUJOCO_GL": "glfw"}, "reacher", "spring", 8)

    assert result["mp4"] is None and result["num_frames"] == 0
    assert "OpenGL" in result["reason"] and "libosmesa6" in result["reason"]
    assert len(result["warnings"]) == 1
    html = Path(result["html"])
    assert html == tmp_path / "reacher.html"
    text = html.read_text()
    assert "<html" in text.lower() and "system_json_b64" not in text  # the template was filled
    assert not list(tmp_path.glob("*.mp4"))


def test_rollout_with_partial_params_compiles_once():
    env = GymnaxEnv("MountainCarContinuous-v0")
    traces = []

    def policy(params, obs, key):
        traces.append(1)  # runs only while tracing
        return jnp.tanh(params["gain"] * obs[1:2])

    lengths = [
        rollout(env, jax.tree_util.Partial(policy, {"gain": jnp.float32(g)}), jax.random.key(0))[1].reward.shape[0]
        for g in (50.0, 400.0)
    ]
    assert len(traces) == 1
    assert lengths[0] != lengths[1]  # the new params were used, not baked in


def test_gymnax_episodes_of_any_length_are_drawn_by_one_compiled_program(monkeypatch):
    # video.every films many episodes in one run: one compile, not one per episode length
    env = GymnaxEnv("CartPole-v1")
    traces, own = [], env.env.get_obs
    monkeypatch.setattr(env.env, "get_obs", lambda *args, **kwargs: (traces.append(1), own(*args, **kwargs))[1])
    lengths, drawing_traces = [], 0
    for push in (0, 1):  # always left, always right: the pole falls after different numbers of steps
        states, steps = rollout(env, lambda obs, key, push=push: jnp.int32(push), jax.random.key(4))
        traces.clear()  # the rollout's steps observe too
        frames, _ = env.render(states, steps, width=60, height=40)
        lengths.append(len(frames))
        drawing_traces += len(traces)
    assert len(set(lengths)) == 2 and drawing_traces == 1


class HtmlOnlyProbe(BlindProbe):
    """A probe whose drawer cannot start but which has an HTML viewer, like Brax without OpenGL."""

    def render_html(self, states, steps):
        return "<html>viewer</html>"


class DrawnProbe(ProbeEnv):
    """A probe that draws a grey frame per state."""

    def render(self, states, steps, *, width=None, height=None, max_frames=250):
        return np.full((2, 16, 16, 3), 128, np.uint8), 30.0


def test_a_new_video_replaces_the_other_form_of_the_same_name(tmp_path):
    drawn = record_episode(DrawnProbe(truncate=False), zero_action, jax.random.key(0), tmp_path, "final")
    assert drawn.mp4 == tmp_path / "final.mp4"
    # a later film that could only write the HTML viewer: the older mp4 is not left beside it
    with pytest.warns(UserWarning, match="HTML viewer instead"):
        fallback = record_episode(HtmlOnlyProbe(truncate=False), zero_action, jax.random.key(0), tmp_path, "final")
    assert fallback.html == tmp_path / "final.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.html"]
    # and an mp4 again replaces the viewer
    record_episode(DrawnProbe(truncate=False), zero_action, jax.random.key(0), tmp_path, "final")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.mp4"]


def test_a_video_that_fails_mid_encode_leaves_the_older_one_and_no_temp_file(tmp_path, monkeypatch):
    from imageio.plugins.ffmpeg import FfmpegFormat

    frames = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    older = write_mp4(frames, tmp_path / "final.mp4", fps=10).read_bytes()
    append = FfmpegFormat.Writer._append_data
    appended = []

    def fail_at_the_fourth_frame(self, im, meta):
        # ffmpeg has encoded part of the video when this fails, as a full disk or a kill would leave it
        if len(appended) == 3:
            raise OSError("No space left on device")
        appended.append(1)
        return append(self, im, meta)

    monkeypatch.setattr(FfmpegFormat.Writer, "_append_data", fail_at_the_fourth_frame)
    with pytest.raises(OSError, match="No space left"):
        write_mp4(frames[::-1], tmp_path / "final.mp4", fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.mp4"]
    assert (tmp_path / "final.mp4").read_bytes() == older
