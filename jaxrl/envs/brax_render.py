"""Brax frames for the Brax adapter: MuJoCo's OpenGL renderer and Brax's HTML viewer.

Owns everything that turns Brax physics states into pictures. `brax.io` and
`mujoco` are imported inside the functions, so this module loads with jax
alone.

Without an OpenGL platform for MuJoCo (see `mujoco_gl`), `brax_frames` raises
RenderUnavailable, and the HTML viewer (`brax_html`) still works.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxrl.envs.mujoco_gl import draw

__all__ = ["brax_frames", "brax_html"]


def _unstack(tree: Any) -> list[Any]:
    """A pytree with leaves [T, ...] -> a list of T pytrees of host arrays (a list passes through)."""
    if isinstance(tree, list):
        return tree
    leaves, treedef = jax.tree.flatten(jax.device_get(tree))
    length = leaves[0].shape[0]
    return [jax.tree.unflatten(treedef, [leaf[i] for leaf in leaves]) for i in range(length)]


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

    states = _unstack(pipeline_states)
    if not states:
        return np.zeros((0, height, width, 3), np.uint8)
    camera = camera if camera is not None else _default_camera(sys_)
    return draw(lambda: image.render_array(sys_, states, height=height, width=width, camera=camera), width, height)


def brax_html(sys_: Any, pipeline_states: Any) -> str:
    """Brax's interactive three.js viewer of the trajectory (`brax.io.html.render`).

    sys_: the brax env's `System` (`env.sys`).
    pipeline_states: stacked over time (leaves [T, ...]) or a list of T states.
    Returns the page as a string; it needs no OpenGL, but the browser fetches
    the viewer's JavaScript from a CDN.
    """
    from brax.io import html

    return html.render(sys_, _unstack(pipeline_states))
