"""Environments behind one contract (`jaxrl.envs.base`), built from config."""

from __future__ import annotations

from jaxrl.envs.base import Env, EnvSpec, EnvState, TimeStep
from jaxrl.errors import ConfigError

SUITES = ("gymnax", "brax")


def make_env(suite: str, name: str, backend: str = "positional", episode_length: int = 1000) -> Env:
    """Builds an env: `suite` is "gymnax" or "brax"; `name` the suite's env name.

    `backend` (Brax's physics pipeline) and `episode_length` (Brax's time
    limit) apply to Brax only; gymnax envs carry their own time limits.
    """
    if suite == "gymnax":
        from jaxrl.envs.gymnax_env import GymnaxEnv

        return GymnaxEnv(name)
    if suite == "brax":
        from jaxrl.envs.brax_env import BraxEnv

        return BraxEnv(name, backend=backend, episode_length=episode_length)
    raise ConfigError(f"unknown env.suite {suite!r}; choose one of: {', '.join(SUITES)}")


__all__ = ["SUITES", "Env", "EnvSpec", "EnvState", "TimeStep", "make_env"]
