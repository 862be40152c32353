"""Videos of a policy: a pure, jitted rollout, then an mp4 file on the host.

Owns `rollout` (the only traced code here), `write_mp4` (ffmpeg) and
`record_episode`, which plays an episode and asks the env to draw it. The
drawing itself lives beside each adapter family (`Env.render`:
`jaxrl.envs.gymnax_render`, `jaxrl.envs.brax_render`), so this module
knows no backend. `RenderUnavailable` is re-exported from `jaxrl.envs.base`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxrl.envs.base import Env, EnvState, RenderUnavailable, TimeStep
from jaxrl.files import write_atomically

__all__ = [
    "RenderUnavailable",
    "VideoResult",
    "record_episode",
    "rollout",
    "write_mp4",
]

Policy = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """What `record_episode` wrote.

    mp4: the video, or None when it could not be rendered (see `reason`).
    html: the env's HTML viewer (Brax's: a self-contained page that loads its
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
    # encoded beside it and renamed when complete: a failure or a kill mid-encode
    # must not replace an older good video with a truncated one
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        with warnings.catch_warnings():
            # imageio starts ffmpeg with subprocess, which forks and execs at once;
            # JAX's warning is about forked children that go on running Python
            warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
            writer = imageio.get_writer(
                tmp,
                format="FFMPEG",
                fps=fps,
                codec="libx264",
                pixelformat="yuv420p",
                macro_block_size=1,  # the sides are already even; no rescaling
                ffmpeg_log_level="error",
            )
            # closed on failure too (imageio's `with` leaves ffmpeg running after an error,
            # and it could create the temporary file again after it was removed)
            try:
                for frame in frames:
                    writer.append_data(frame)
            finally:
                writer.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
    """Plays one episode of `act` and writes `out_dir/name.mp4` (and `.html` where the env has a viewer).

    The env draws its own frames (`env.render`, see `jaxrl.envs.base.Env`).
    act: pure `(obs [*obs_shape], key) -> action`, as for `rollout`.
    fps: playback rate; default the env's (gym's for its classic-control scenes, real time for Brax).
    width, height: frame size; default the env's (600x400 CartPole, 400x300
        MountainCar, 320x240 Brax); given one side, gymnax's drawers keep the shape.
    max_frames: passed to `env.render`: a longer episode is drawn every k-th
        state (k = ceil(T / max_frames)), the fps lowered to match, so the
        video still plays in real time and its frames fit in memory (MuJoCo,
        without a GPU, also takes about 0.1 s a frame). The HTML viewer
        always gets every state.
    always_html: write the HTML viewer (Brax's `env.render_html`) even when
        the mp4 works (by default it is the fallback when `render` cannot run).

    A file written replaces any older video of the same name: writing
    `name.mp4` removes an older `name.html` (unless written now, by
    `always_html`), and the HTML fallback removes an older `name.mp4`, so
    the folder never holds a stale video beside the new one.

    Never raises for a missing renderer: an env that cannot render gets its
    HTML viewer, if it has one, and a warning; an env without a drawer
    (`env.render_unavailable()`, or no render methods at all) gets no file and
    no rollout. `reason` says why there is no mp4.
    """
    reason = _why_no_drawer(env)
    if reason is not None:
        # Checked before the rollout: no point compiling an episode nobody sees.
        return VideoResult(None, None, 0, reason, float("nan"), 0)

    states, steps = rollout(env, act, key, max_steps)
    length = int(np.asarray(steps.reward).shape[0])
    episode_return = float(np.asarray(steps.reward, np.float64).sum())
    out_dir = Path(out_dir)
    render_html = getattr(env, "render_html", None)

    def result(mp4=None, html=None, num_frames=0, reason=None) -> VideoResult:
        return VideoResult(mp4, html, num_frames, reason, episode_return, length)

    html_path = None
    if always_html and render_html is not None:
        html_path = _write_text(out_dir / f"{name}.html", render_html(states, steps))
    try:
        frames, env_fps = env.render(states, steps, width=width, height=height, max_frames=max_frames)
    except RenderUnavailable as err:
        if render_html is None:
            return result(reason=err.reason)
        warnings.warn(f"no video for {name}: {err.reason} Wrote the HTML viewer instead.", stacklevel=2)
        if html_path is None:
            html_path = _write_text(out_dir / f"{name}.html", render_html(states, steps))
        (out_dir / f"{name}.mp4").unlink(missing_ok=True)  # an older film's, no longer this name's video
        return result(html=html_path, reason=err.reason)
    path = write_mp4(frames, out_dir / f"{name}.mp4", fps=fps or env_fps)
    if html_path is None:
        (out_dir / f"{name}.html").unlink(missing_ok=True)  # an older fallback's
    return result(mp4=path, html=html_path, num_frames=len(frames))


def _why_no_drawer(env: Env) -> str | None:
    # The render methods are optional in the Env contract.
    if not hasattr(env, "render"):
        env_name = getattr(env, "name", type(env).__name__)
        return f"no renderer for {env_name!r}: its env has no `render` method"
    unavailable = getattr(env, "render_unavailable", None)
    return unavailable() if unavailable is not None else None


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)
    return path
