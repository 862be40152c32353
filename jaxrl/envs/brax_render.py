"""Brax frames for the Brax adapter: MuJoCo's OpenGL renderer and Brax's HTML viewer.

Owns everything that turns Brax physics states into pictures. `brax.io` and
`mujoco` are imported inside the functions, so this module loads with jax
alone.

MuJoCo needs an OpenGL platform, chosen by MUJOCO_GL before mujoco is imported
(`jaxrl.host.configure`): `egl` on an NVIDIA GPU, `osmesa` on a CPU machine
with libOSMesa (Debian/Ubuntu: `libosmesa6`). Without one, `brax_frames`
raises RenderUnavailable, and the HTML viewer (`brax_html`) still works.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jaxrl.envs.base import RenderUnavailable

__all__ = ["brax_frames", "brax_html"]


def _unstack(tree: Any) -> list[Any]:
    leaves, treedef = jax.tree.flatten(jax.device_get(tree))
    length = leaves[0].shape[0]
    return [jax.tree.unflatten(treedef, [leaf[i] for leaf in leaves]) for i in range(length)]


def _no_gl_reason(err: BaseException) -> str | None:
    """A reason if `err` means there is no usable OpenGL platform, else None."""
    text = f"{type(err).__name__}: {err}"
    gl_words = ("opengl", "egl", "osmesa", "glfw", "gl context", "gl_context", "mjr_makecontext")
    if not isinstance(err, ImportError) and not any(w in text.lower() for w in gl_words):
        return None
    return (
        f"no OpenGL platform for MuJoCo (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}): {text}. "
        "On a CPU machine install libOSMesa (Debian/Ubuntu: apt-get install libosmesa6) and use "
        "MUJOCO_GL=osmesa; on an NVIDIA GPU use MUJOCO_GL=egl; set it before mujoco is imported."
    )


def _default_camera(sys_: Any) -> str | None:
    # Brax's locomotion models (humanoid, ant, hopper, ...) define a "track"
    # camera that follows the torso; the free camera would lose the body.
    import mujoco

    found = mujoco.mj_name2id(sys_.mj_model, mujoco.mjtObj.mjOBJ_CAMERA, "track") >= 0
    return "track" if found else None


def brax_frames(
    sys_: Any,
    pipeline_states: Any,
    width: int = 320,
    height: int = 240,
    camera: str | None = None,
) -> np.ndarray:
    """Renders Brax physics states with MuJoCo's renderer (`brax.io.image.render_array`).

    sys_: the brax env's `System` (`env.sys`).
    pipeline_states: a pipeline state pytree stacked over time (leaves [T, ...],
        e.g. `states.inner.pipeline_state` from `jaxrl.video.rollout`), or a
        list of T unstacked ones.
    width, height: at most the model's offscreen buffer (640x480 by default).
    camera: a camera name of the model; default its "track" camera if it has
        one, else MuJoCo's free camera.
    Returns uint8 [T, height, width, 3]. Software rendering (osmesa) costs about
    0.1 s a frame at 320x240 on a 2-core CPU, plus about 1 s to set up.
    Raises RenderUnavailable when MuJoCo has no OpenGL platform.
    """
    from brax.io import image

    states = pipeline_states if isinstance(pipeline_states, list) else _unstack(pipeline_states)
    if not states:
        return np.zeros((0, height, width, 3), np.uint8)
    camera = camera if camera is not None else _default_camera(sys_)
    try:
        frames = image.render_array(sys_, states, height=height, width=width, camera=camera)
    except Exception as err:  # mujoco raises ImportError, RuntimeError or FatalError here
        reason = _no_gl_reason(err)
        if reason is None:
            raise
        raise RenderUnavailable(reason) from err
    return np.stack([np.asarray(f, np.uint8) for f in frames])


def brax_html(sys_: Any, pipeline_states: Any) -> str:
    """Brax's interactive three.js viewer of the trajectory (`brax.io.html.render`).

    sys_: the brax env's `System` (`env.sys`).
    pipeline_states: stacked over time (leaves [T, ...]) or a list of T states.
    Returns the page as a string; it needs no OpenGL, but the browser fetches
    the viewer's JavaScript from a CDN.
    """
    from brax.io import html

    states = pipeline_states if isinstance(pipeline_states, list) else _unstack(pipeline_states)
    return html.render(sys_, states)
