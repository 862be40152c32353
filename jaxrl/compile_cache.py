"""JAX's persistent compilation cache, so that a resumed or repeated run skips XLA.

A run preempted on a spot instance pays its whole compilation again when it
resumes (about 40 s of XLA for `experiment=humanoid_cpu` on 2 cores, see
docs/benchmarks.md). JAX can keep compiled programs on disk, keyed by the
program, the compile options, the XLA flags, the jax version and the device
kind; jaxrl points it at `compile_cache` (a folder, null for none) unless the
user has chosen a folder for every JAX program with JAX_COMPILATION_CACHE_DIR.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = ["CacheCount", "enable"]

ENV_VAR = "JAX_COMPILATION_CACHE_DIR"


def enable(folder: str | None) -> str | None:
    """Makes JAX cache compiled programs in `folder` (`~` expanded; created if
    missing) and returns the folder in use, or None when there is none.

    A non-empty JAX_COMPILATION_CACHE_DIR wins over `folder` (jax reads it
    itself), so one cache can serve all of a user's JAX programs. None (or
    "", as `compile_cache=''` gives) sets no folder and leaves one JAX already
    has (from `jax.config`, or from an earlier run in this process) in place,
    which is then the one returned. A folder that cannot be written is
    reported on stderr and the run compiles without a cache: the cache saves
    time, it is never worth failing a run for.
    """
    if os.environ.get(ENV_VAR) or not folder:
        return jax.config.jax_compilation_cache_dir or None
    path = Path(folder).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        # jax only finds out that it cannot write when it first stores a program, mid-run
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        print(f"warning: compile_cache={folder} cannot be written ({err}); compiling without a cache",
              file=sys.stderr, flush=True)
        return None
    if jax.config.jax_compilation_cache_dir != str(path):
        compilation_cache.set_cache_dir(str(path))
        # a cache opened earlier in this process (a notebook's previous run) keeps its folder otherwise
        compilation_cache.reset_cache()
    return str(path)


class CacheCount:
    """Counts, while in its `with` block, the programs JAX loaded from the
    persistent cache (`hits`), those it had to compile (`misses`) and the
    compile seconds the hits saved (`saved_s`), from jax.monitoring's events."""

    def __init__(self) -> None:
        self.hits, self.misses, self.saved_s = 0, 0, 0.0

    def _event(self, event: str, **_: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.hits += 1
        elif event == "/jax/compilation_cache/cache_misses":
            self.misses += 1

    def _duration(self, event: str, duration: float, **_: Any) -> None:
        if event == "/jax/compilation_cache/compile_time_saved_sec":
            self.saved_s += duration

    def __enter__(self) -> CacheCount:
        jax.monitoring.register_event_listener(self._event)
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        return self

    def __exit__(self, *exc: Any) -> None:
        jax.monitoring.unregister_event_listener(self._event)
        jax.monitoring.unregister_event_duration_listener(self._duration)

    def summary(self, folder: str) -> dict[str, Any]:
        """{"dir", "hits", "misses", "saved_s"}, as summary.json records them."""
        return {"dir": folder, "hits": self.hits, "misses": self.misses, "saved_s": round(self.saved_s, 3)}
