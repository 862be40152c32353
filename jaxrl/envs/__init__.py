"""Environments behind one contract (`jaxrl.envs.base`), built from config."""

from __future__ import annotations

from jaxrl.envs.base import Env, EnvSpec, EnvState, TimeStep
from jaxrl.errors import ConfigError

SUITES = ("gymnax", "brax")


def make_env(suite: str, name: str, backend: str = "positional", episode_length: int | None = None) -> Env:
    """Builds an env: `suite` is "gymnax" or "brax"; `name` the suite's env name.

    `backend` (Brax's physics pipeline) applies to Brax only. `episode_length`
    is the time limit; None keeps the env's own (gymnax) or 1000 (Brax).
    """
    if episode_length is not None and episode_length <= 0:
        raise ConfigError(f"env.episode_length must be positive, got {episode_length}")
    if suite == "gymnax":
        from jaxrl.envs.gymnax_env import GymnaxEnv

        return GymnaxEnv(name, episode_length)
    if suite == "brax":
        from jaxrl.envs.brax_env import BraxEnv

        return BraxEnv(name, backend=backend, episode_length=episode_length or 1000)
    raise ConfigError(f"unknown env.suite {suite!r}; choose one of: {', '.join(SUITES)}")


__all__ = ["SUITES", "Env", "EnvSpec", "EnvState", "TimeStep", "make_env"]
