"""Videos of a policy: a pure, jitted rollout, then rendering and files on the host.

`rollout` is the only traced code here. Everything after it (drawing frames,
MuJoCo's OpenGL renderer, ffmpeg, files) runs on the host, on NumPy arrays.
The drawing code lives beside the adapters (`jaxrl.envs.mountaincar_render`,
`jaxrl.envs.brax_render`). Without OpenGL for MuJoCo, `record_episode` still
writes Brax's interactive HTML viewer and says why there is no mp4.
`RenderUnavailable` is defined with the env contract (`jaxrl.envs.base`) and
re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrl.envs.base import Env, EnvState, RenderUnavailable, TimeStep
from jaxrl.envs.brax_render import brax_frames, brax_html
from jaxrl.envs.mountaincar_render import mountaincar_frames

__all__ = [
    "RenderUnavailable",
    "VideoResult",
    "record_episode",
    "rollout",
    "write_mp4",
]

Policy = Callable[[jax.Array, jax.Array], jax.Array]

MOUNTAINCAR_ENVS = ("MountainCar-v0", "MountainCarContinuous-v0")


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """What `record_episode` wrote.

    mp4: the video, or None when it could not be rendered (see `reason`).
    html: Brax's interactive viewer (a self-contained page that loads its
        JavaScript from a CDN), or None.
    num_frames: frames in the mp4 (0 when there is none).
    reason: why there is no mp4, else None.
    episode_return: return of the recorded episode (up to its first end);
        NaN when no episode was played (no renderer for the env).
    episode_length: its number of steps (0 when none was played).
    """

    mp4: Path | None
    html: Path | None
    num_frames: int
    reason: str | None
    episode_return: float
    episode_length: int


# ---------------------------------------------------------------- rollout


def _scan_episode(env: Env, act: Policy, key: jax.Array, num_steps: int) -> tuple[EnvState, TimeStep]:
    key_reset, key_run = jax.random.split(key)
    state, obs = env.reset(key_reset)

    def body(carry, _):
        state, obs, key = carry
        key, key_act, key_step = jax.random.split(key, 3)
        action = act(obs, key_act)
        next_state, step = env.step(key_step, state, action)
        return (next_state, step.obs, key), (state, step)

    _, (states, steps) = jax.lax.scan(body, (state, obs, key_run), None, length=num_steps)
    return states, steps


# A plain function is a static argument (compiled once per function object); a
# jax.tree_util.Partial is a pytree whose bound arguments (the policy params)
# are traced, so recording the same policy with new params reuses the program.
_scan_static_act = jax.jit(_scan_episode, static_argnums=(0, 1, 3))
_scan_traced_act = jax.jit(_scan_episode, static_argnums=(0, 3))


def rollout(env: Env, act: Policy, key: jax.Array, max_steps: int | None = None) -> tuple[EnvState, TimeStep]:
    """Plays one episode of `act` in `env` in a jitted `lax.scan`; returns host (NumPy) arrays.

    act: a pure JAX function `(obs [*obs_shape], key) -> action` (normalised:
        [action_dim] in [-1, 1], or an int for a discrete env), usually the
        deterministic policy. A plain function is compiled into the program
        with `env` (both must be hashable; plain objects and functions are, by
        identity). Pass `jax.tree_util.Partial(policy_fn, params)` instead to
        keep params as traced inputs, so that recording new params (a later
        checkpoint) does not recompile; `policy_fn` must then be the same
        object each time.
    max_steps: steps to scan (default `env.spec.max_episode_steps`).

    Returns (states, steps), each with a leading time axis [T]: `states[t]` is
    the EnvState before step t, `steps[t]` the TimeStep it produced. T runs to
    the first step with `done` included (so the state after the last step is
    only in `steps.final_obs[-1]`: the env auto-resets), or `max_steps` if the
    episode did not end.
    """
    num_steps = int(max_steps if max_steps is not None else env.spec.max_episode_steps)
    if num_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {num_steps}")
    scan = _scan_traced_act if isinstance(act, jax.tree_util.Partial) else _scan_static_act
    states, steps = jax.device_get(scan(env, act, key, num_steps))
    done = np.asarray(steps.terminated) | np.asarray(steps.truncated)
    length = int(np.argmax(done)) + 1 if done.any() else num_steps
    return jax.tree.map(lambda x: x[:length], states), jax.tree.map(lambda x: x[:length], steps)


# ---------------------------------------------------------------- MountainCar


def _mountaincar_positions(states: EnvState, steps: TimeStep) -> np.ndarray:
    # The env auto-resets on the last step, so the car's final position (at the
    # flag, when it succeeded) exists only as the first entry of final_obs.
    final = np.asarray(steps.final_obs)[-1, 0]
    return np.append(np.asarray(states.inner.position), final)


# ---------------------------------------------------------------- files


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float = 30) -> Path:
    """Encodes uint8 frames [T, H, W, 3] as H.264/yuv420p mp4 (plays in browsers and wandb).

    yuv420p needs even sides: odd ones are padded by repeating the edge pixel
    rather than letting ffmpeg rescale. Creates parent folders; returns the path.
    """
    import imageio.v2 as imageio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [T>0, H, W, 3], got shape {frames.shape}")
    frames = frames.astype(np.uint8, copy=False)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # imageio starts ffmpeg with subprocess, which forks and execs at once;
        # JAX's warning is about forked children that go on running Python
        warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
        with imageio.get_writer(
            path,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,  # the sides are already even; no rescaling
            ffmpeg_log_level="error",
        ) as writer:
            for frame in frames:
                writer.append_data(frame)
    return path


def _env_kind(env: Any) -> str:
    # Look the adapters up in sys.modules so that recording a gymnax env never
    # imports brax (and mujoco) and vice versa: an env of a class whose module
    # was never imported cannot be an instance of it.
    gymnax_mod = sys.modules.get("jaxrl.envs.gymnax_env")
    brax_mod = sys.modules.get("jaxrl.envs.brax_env")
    if gymnax_mod is not None and isinstance(env, gymnax_mod.GymnaxEnv):
        return "mountaincar" if env.name in MOUNTAINCAR_ENVS else "gymnax"
    if brax_mod is not None and isinstance(env, brax_mod.BraxEnv):
        return "brax"
    return "unknown"


def record_episode(
    env: Env,
    act: Policy,
    key: jax.Array,
    out_dir: str | os.PathLike,
    name: str,
    fps: float | None = None,
    *,
    max_steps: int | None = None,
    width: int | None = None,
    height: int | None = None,
    max_frames: int = 250,
    always_html: bool = False,
) -> VideoResult:
    """Plays one episode of `act` and writes `out_dir/name.mp4` (and `.html` for Brax).

    act: pure `(obs [*obs_shape], key) -> action`, as for `rollout`.
    fps: playback rate; default 30 for MountainCar, real time for Brax.
    width, height: default 400x300 for MountainCar, 320x240 for Brax.
    max_frames: Brax only. Software OpenGL costs about 0.1 s a frame at
        320x240 on a small CPU, so a longer episode is subsampled to every k-th
        state (k = ceil(T / max_frames); the last state is always kept) and the
        default fps divided by k, so the video still plays in real time. The
        HTML viewer always gets every state.
    always_html: Brax only: write the HTML viewer even when the mp4 works
        (by default it is the fallback when there is no OpenGL).

    Never raises for a missing renderer: a Brax env without OpenGL gets the
    HTML viewer and a warning; any other env than MountainCar or Brax gets no
    file and no rollout. `reason` says why there is no mp4.
    """
    kind = _env_kind(env)
    if kind not in ("mountaincar", "brax"):
        # Checked before the rollout: no point compiling an episode nobody sees.
        env_name = getattr(env, "name", type(env).__name__)
        reason = f"no renderer for {env_name!r}: jaxrl draws MountainCar (gymnax) and Brax envs only"
        return VideoResult(None, None, 0, reason, float("nan"), 0)

    states, steps = rollout(env, act, key, max_steps)
    length = int(np.asarray(steps.reward).shape[0])
    episode_return = float(np.asarray(steps.reward, np.float64).sum())
    out_dir = Path(out_dir)

    def result(mp4=None, html=None, num_frames=0, reason=None) -> VideoResult:
        return VideoResult(mp4, html, num_frames, reason, episode_return, length)

    if kind == "mountaincar":
        params = env.params
        frames = mountaincar_frames(
            _mountaincar_positions(states, steps),
            min_position=float(params.min_position),
            max_position=float(params.max_position),
            goal_position=float(params.goal_position),
            width=width or 400,
            height=height or 300,
        )
        path = write_mp4(frames, out_dir / f"{name}.mp4", fps=fps or 30)
        return result(mp4=path, num_frames=len(frames))

    if kind == "brax":
        pipeline = states.inner.pipeline_state
        stride = max(1, math.ceil(length / max_frames))
        indices = list(range(0, length, stride))
        if indices[-1] != length - 1:
            indices.append(length - 1)
        picked = jax.tree.map(lambda x: x[np.asarray(indices)], pipeline)

        html_path = None
        if always_html:
            html_path = _write_text(out_dir / f"{name}.html", brax_html(env.env.sys, pipeline))
        try:
            frames = brax_frames(env.env.sys, picked, width=width or 320, height=height or 240)
        except RenderUnavailable as err:
            warnings.warn(f"no video for {name}: {err.reason} Wrote the HTML viewer instead.", stacklevel=2)
            if html_path is None:
                html_path = _write_text(out_dir / f"{name}.html", brax_html(env.env.sys, pipeline))
            return result(html=html_path, reason=err.reason)
        default_fps = 1.0 / (float(env.env.dt) * stride)
        path = write_mp4(frames, out_dir / f"{name}.mp4", fps=fps or default_fps)
        return result(mp4=path, html=html_path, num_frames=len(frames))
    raise AssertionError(f"unhandled env kind {kind!r}")


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
