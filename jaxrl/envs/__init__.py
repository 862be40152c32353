"""Environments behind one contract (`jaxrl.envs.base`), built from config."""

from __future__ import annotations

from jaxrl.envs.base import Env, EnvSpec, EnvState, TimeStep
from jaxrl.errors import ConfigError

SUITES = ("gymnax", "brax", "playground")


def make_env(suite: str, name: str, backend: str | None = None, episode_length: int | None = None) -> Env:
    """Builds an env: `suite` is "gymnax", "brax" or "playground"; `name` the suite's env name.

    `backend` is Brax's physics pipeline (None: "positional"), or Playground's
    MJX implementation (None: "jax"; or "warp"); gymnax has none. `episode_length` is the time limit;
    None keeps the env's own (gymnax, Playground) or 1000 (Brax).
    """
    if episode_length is not None and episode_length <= 0:
        raise ConfigError(f"env.episode_length must be positive, got {episode_length}")
    if suite == "gymnax":
        from jaxrl.envs.gymnax_env import GymnaxEnv

        return GymnaxEnv(name, episode_length)
    if suite == "brax":
        from jaxrl.envs.brax_env import BraxEnv

        return BraxEnv(name, backend=backend or "positional", episode_length=episode_length or 1000)
    if suite == "playground":
        from jaxrl.envs.playground_env import PlaygroundEnv

        return PlaygroundEnv(name, impl=backend or "jax", episode_length=episode_length)
    raise ConfigError(f"unknown env.suite {suite!r}; choose one of: {', '.join(SUITES)}")


__all__ = ["SUITES", "Env", "EnvSpec", "EnvState", "TimeStep", "make_env"]
