"""Process-wide settings that must be in place before jax, brax or mujoco load.

`configure()` is called by `jaxrl/__init__.py` before anything heavy is
imported. It only writes `os.environ`, and never overrides a value the user
set.
"""

from __future__ import annotations

import ctypes.util
import os
import re
import sys
import warnings
from collections.abc import Iterable
from typing import Any

__all__ = [
    "CPU_GUARD", "LAPACK_FREE_ENVS", "batched_lapack_calls", "check_cpu_guard", "choose_mujoco_gl", "configure",
    "guard_cpu_deadlock", "make_deterministic", "needs_cpu_guard", "relax_cpu_guard", "route_mujoco_warnings",
    "set_mujoco_gl",
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
"""The XLA flag that keeps jaxlib 0.10's CPU runtime from deadlocking on batched LAPACK calls."""

# Env suites and physics backends whose step, reset and observation hold no
# batched LAPACK call (tests/test_host.py lowers them to check), so that with
# jaxrl's own networks (`jaxrl.networks.orthogonal`) a run's programs have none.
LAPACK_FREE_ENVS = {"gymnax": None, "brax": ("positional", "spring")}

_guard_is_ours = False


def guard_cpu_deadlock() -> None:
    """Turns off XLA's concurrency-optimised CPU scheduler unless XLA_FLAGS is set.

    jaxlib 0.10's CPU LAPACK kernels (QR, Cholesky, LU, ...) run a batch of
    matrices by handing its pieces to XLA's intra-op thread pool and blocking
    a pool thread until they are done. When that scheduler runs as many such
    calls at once as the pool has threads (two on 2 cores), every thread waits
    for pieces no thread is free to run: the process sits at 0% CPU forever
    (a native stack of the hang: docs/benchmarks.md). Without the scheduler,
    independent ops run one at a time. `import jaxrl` sets this guard, so
    whatever a user computes is safe; `relax_cpu_guard` takes it back, before
    XLA starts, for a run whose programs hold no batched LAPACK call. XLA reads
    the flag when its backend starts; it only affects the CPU backend. A
    user's own XLA_FLAGS are left alone, and so is a process whose backend
    started before `import jaxrl`: XLA would ignore the flag, and
    `check_cpu_guard` then refuses, saying why, a run whose programs could
    hang. Nothing is said before: loading a policy, or training a run that
    needs no guard, is not affected.
    """
    global _guard_is_ours
    if "XLA_FLAGS" in os.environ or _jax_started():
        return
    os.environ["XLA_FLAGS"] = CPU_GUARD
    _guard_is_ours = True


def _jax_started() -> bool:
    """Whether jax's backends have started (XLA has read XLA_FLAGS already)."""
    bridge = sys.modules.get("jax._src.xla_bridge")  # not imported: jax has not started
    return bridge is not None and bridge.backends_are_initialized()


def needs_cpu_guard(suite: str, backend: str | None) -> bool:
    """Whether programs training on env `suite` (with physics `backend`) may
    hold a batched LAPACK call, and so need `CPU_GUARD` on the CPU."""
    if suite not in LAPACK_FREE_ENVS:
        return True
    backends = LAPACK_FREE_ENVS[suite]
    return backends is not None and backend not in backends


def relax_cpu_guard(envs: Iterable[tuple[str, str | None]], members: int) -> bool:
    """Removes the guard `import jaxrl` set when every run this process will
    start trains one member (`members`: the largest population among them)
    on an env that needs no guard (`envs`: their (suite, backend) pairs,
    `needs_cpu_guard`). XLA's scheduler may then run independent ops (the
    actor's and the critic's) on several cores at once: one PPO member on 2
    cores trains 1.09x faster so. A population keeps the guard for speed, not
    safety: there the scheduler measured no gain from 2 members on, and cost
    8 PPO members 5% on 2 cores (docs/benchmarks.md).

    Only before XLA's backend starts, and only a guard jaxrl set itself: a
    user's own XLA_FLAGS, or a process that has computed something already,
    keep what they have. The CLI calls this for its own process; `jaxrl.run`
    does not, since a notebook may train on other envs later. Returns whether
    the guard was removed.
    """
    from jax._src import xla_bridge

    global _guard_is_ours
    # ours and untouched since import: XLA_FLAGS holds the guard alone
    if not _guard_is_ours or os.environ.get("XLA_FLAGS") != CPU_GUARD or xla_bridge.backends_are_initialized():
        return False
    if members > 1 or any(needs_cpu_guard(suite, backend) for suite, backend in envs):
        return False
    del os.environ["XLA_FLAGS"]
    _guard_is_ours = False
    return True


# A custom call to one of jaxlib's CPU LAPACK kernels, with the number of
# batch dimensions jax records on it ("0": one matrix, which runs inline).
_LAPACK_CALL = re.compile(r'custom_call @(lapack_\w+)\(.*?num_batch_dims = "(\d+)"')


def batched_lapack_calls(program_text: str) -> list[str]:
    """The batched LAPACK calls (`lapack_sgeqrf_ffi`, ...) in a lowered
    program's StableHLO text (`jax.jit(f).lower(...).as_text()`): the calls
    that deadlock XLA:CPU without `CPU_GUARD`."""
    return [name for name, batch_dims in _LAPACK_CALL.findall(program_text) if batch_dims != "0"]


def check_cpu_guard(programs: dict[str, Any]) -> None:
    """Raises ConfigError, before compiling, when XLA started on the CPU
    without `CPU_GUARD` and one of the lowered `programs` ({name: jax
    Lowered}) holds a batched LAPACK call: such a program can hang forever
    instead of failing. With the guard (or off the CPU) nothing is read."""
    import jax

    if jax.default_backend() != "cpu" or CPU_GUARD in os.environ.get("XLA_FLAGS", "").split():
        return
    from jaxrl.errors import ConfigError

    for name, program in programs.items():
        calls = batched_lapack_calls(program.as_text())
        if calls:
            remedy = (
                f"XLA_FLAGS is set without it: start the run again with {CPU_GUARD} in XLA_FLAGS"
                if "XLA_FLAGS" in os.environ
                else "jax computed before `import jaxrl`, which sets it: import jaxrl first (in a notebook: restart it)"
            )
            raise ConfigError(
                f"the {name} program holds batched LAPACK calls ({', '.join(sorted(set(calls)))}), which can deadlock "
                f"jaxlib 0.10's CPU runtime; this process's XLA started without the guard against it. {remedy}"
            )


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


def route_mujoco_warnings() -> None:
    """Sends MuJoCo's warnings to Python's `warnings`, unless a handler is set
    already (the user's). MuJoCo's own handler appends them to MUJOCO_LOG.TXT in
    the working directory, where a run writes nothing but its run folder (Brax's
    halfcheetah model, for one, uses an attribute MuJoCo deprecates)."""
    import mujoco

    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_warn_from_mujoco)


def _warn_from_mujoco(message: str) -> None:
    try:
        warnings.warn(f"MuJoCo: {message}", stacklevel=2)
    except Exception:  # noqa: BLE001 (warnings made errors: an exception leaving this callback aborts the process)
        print(f"warning: MuJoCo: {message}", file=sys.stderr, flush=True)


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
