"""Process-wide settings that must be in place before jax, brax or mujoco load.

`configure()` is called by `jaxrl/__init__.py` before anything heavy is
imported. It only writes `os.environ`, and never overrides a value the user
set.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

__all__ = [
    "CPU_GUARD", "choose_mujoco_gl", "configure", "guard_cpu_deadlock", "make_deterministic", "set_mujoco_gl",
]

# The OpenGL platforms mujoco's Python bindings can run headless on Linux; the
# names are shared by MUJOCO_GL and PyOpenGL's PYOPENGL_PLATFORM.
_HEADLESS_GL = ("egl", "osmesa")


def _nvidia_present() -> bool:
    # A device node or the driver's proc entry is a cheap, import-free sign of
    # an NVIDIA driver (Colab GPU runtimes, GPU clusters); its EGL is then the
    # fast, hardware-accelerated way to render.
    return os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia/version")


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def choose_mujoco_gl() -> str | None:
    """The MUJOCO_GL value `configure` would pick on this machine, or None.

    Order: an NVIDIA driver with libEGL -> "egl"; a loadable libOSMesa ->
    "osmesa" (software rendering, e.g. Debian's `libosmesa6`); no display but a
    loadable libEGL -> "egl" (Mesa's EGL also renders in software on a plain
    CPU machine); otherwise None, leaving mujoco's default (GLFW, which needs a
    display). Looks only at files and the loader cache: it loads no library.
    """
    if not sys.platform.startswith("linux"):
        # macOS (CGL) and Windows (WGL) need nothing from us.
        return None
    has_egl = ctypes.util.find_library("EGL") is not None
    if _nvidia_present() and has_egl:
        return "egl"
    if ctypes.util.find_library("OSMesa") is not None:
        return "osmesa"
    if has_egl and not _has_display():
        return "egl"
    return None


def configure() -> None:
    """All process-wide settings: the XLA CPU guard and the MuJoCo GL platform."""
    guard_cpu_deadlock()
    set_mujoco_gl()


CPU_GUARD = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
"""The XLA flag that keeps jaxlib 0.10's CPU scheduler from deadlocking training programs."""


def guard_cpu_deadlock() -> None:
    """Turns off XLA's concurrency-optimised CPU scheduler unless XLA_FLAGS is set.

    With jaxlib 0.10 that scheduler can deadlock training programs on the
    CPU: after compiling, every XLA thread waits on a futex and the process
    sits at 0% CPU. It was seen with vmapped populations and with a single
    SAC member on Brax humanoid (32 envs, 4 gradient steps per update), so
    the guard stays on for every run, although one PPO seed trains about
    1.1x faster without it (docs/benchmarks.md). XLA reads the flag when its
    backend starts, so this must run before the first computation; the flag
    only affects the CPU backend. A user's own XLA_FLAGS are left alone.
    """
    if "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = CPU_GUARD


def set_mujoco_gl() -> None:
    """Sets MUJOCO_GL (and PYOPENGL_PLATFORM to match) when the user has not.

    Must run before `mujoco` is imported: mujoco reads MUJOCO_GL once, at
    import (`mujoco/rendering/classic/gl_context.py`), to pick its OpenGL
    context class, and raises at import on a value it does not know. Its EGL
    and OSMesa modules refuse to load when PYOPENGL_PLATFORM names another
    platform, so both variables are kept equal. Nothing is loaded or
    initialised here: a machine with no OpenGL at all still imports everything,
    and only rendering reports the problem (see `jaxrl.video.RenderUnavailable`).
    """
    if os.environ.get("MUJOCO_GL"):
        return
    user_pyopengl = os.environ.get("PYOPENGL_PLATFORM", "").strip().lower()
    if user_pyopengl:
        # The user pinned PyOpenGL's platform; any other MUJOCO_GL would fail.
        if user_pyopengl in _HEADLESS_GL:
            os.environ["MUJOCO_GL"] = user_pyopengl
        return
    choice = choose_mujoco_gl()
    if choice is not None:
        os.environ["MUJOCO_GL"] = choice
        os.environ["PYOPENGL_PLATFORM"] = choice


DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def make_deterministic() -> None:
    """`deterministic=true`: XLA's deterministic GPU reductions and the highest
    matmul precision, so that a GPU run repeats bit for bit (on CPUs and TPUs
    XLA is deterministic already).

    XLA reads XLA_FLAGS once, when its backend starts: raises ConfigError
    when jax has already computed something in this process (a notebook)
    without the flag, saying how to set it instead.
    """
    import jax
    from jax._src import xla_bridge

    from jaxrl.errors import ConfigError

    flags = os.environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_FLAG not in flags:
        if xla_bridge.backends_are_initialized():
            raise ConfigError(
                "deterministic=true must be set before jax starts; in a notebook, set "
                f"os.environ['XLA_FLAGS'] = '{DETERMINISTIC_FLAG}' before importing jax, or restart it"
            )
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}".strip()
    jax.config.update("jax_default_matmul_precision", "highest")
