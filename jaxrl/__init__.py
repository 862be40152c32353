"""jaxrl: pure-JAX reinforcement learning, jitted and vmapped over seeds and hyperparameters."""

from jaxrl.host import configure as _configure

# before jax, brax or mujoco start: see jaxrl/host.py
_configure()

from jaxrl.policy import load_policy  # noqa: E402

__all__ = ["load_policy"]
