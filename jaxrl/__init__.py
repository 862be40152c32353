"""jaxrl: pure-JAX reinforcement learning, jitted and vmapped over seeds and hyperparameters.

`import jaxrl` is cheap: it only applies the process settings that must
precede jax (`jaxrl.host`); `run`, `Result` and `load_policy` import the
training code when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jaxrl.host import configure as _configure

# before jax, brax or mujoco start: see jaxrl/host.py
_configure()

if TYPE_CHECKING:
    from jaxrl.api import Result, run
    from jaxrl.policy import load_policy

__all__ = ["Result", "load_policy", "run"]


def __getattr__(name: str) -> Any:
    if name == "load_policy":
        from jaxrl.policy import load_policy

        return load_policy
    if name in ("run", "Result"):
        from jaxrl import api

        return getattr(api, name)
    raise AttributeError(f"module 'jaxrl' has no attribute {name!r}")
