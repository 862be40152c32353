"""What the two MuJoCo-drawn adapters (Brax, Playground) share: turning "no
OpenGL here" into `RenderUnavailable` with a reason a user can act on.

MuJoCo needs an OpenGL platform, chosen by MUJOCO_GL before mujoco is imported
(`jaxrl.host.configure`): `egl` on an NVIDIA GPU, `osmesa` on a CPU machine
with libOSMesa (Debian/Ubuntu: `libosmesa6`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from jaxrl.envs.base import RenderUnavailable

__all__ = ["draw"]


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


def draw(render: Callable[[], Any], width: int, height: int) -> np.ndarray:
    """Calls `render()` (a MuJoCo renderer returning T frames [height, width, 3])
    and stacks them: uint8 [T, height, width, 3].

    Raises RenderUnavailable when MuJoCo has no OpenGL platform; other errors pass.
    """
    try:
        frames = list(render())
    except Exception as err:  # mujoco raises ImportError, RuntimeError or FatalError here
        reason = _no_gl_reason(err)
        if reason is None:
            raise
        raise RenderUnavailable(reason) from err
    if not frames:
        return np.zeros((0, height, width, 3), np.uint8)
    return np.stack([np.asarray(f, np.uint8) for f in frames])
