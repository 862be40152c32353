"""jaxrl: pure-JAX reinforcement learning, jitted and vmapped over seeds and hyperparameters.

`import jaxrl` is cheap: it only applies the process settings that must
precede jax (`jaxrl.host`); `load_policy` imports the training code when first
used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jaxrl.host import configure as _configure

# before jax, brax or mujoco start: see jaxrl/host.py
_configure()

if TYPE_CHECKING:
    from jaxrl.policy import load_policy

__all__ = ["load_policy"]


def __getattr__(name: str) -> Any:
    if name == "load_policy":
        from jaxrl.policy import load_policy

        return load_policy
    raise AttributeError(f"module 'jaxrl' has no attribute {name!r}")
