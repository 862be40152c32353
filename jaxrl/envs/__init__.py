"""Environments behind one contract (`jaxrl.envs.base`), built from config."""

from __future__ import annotations

from jaxrl.envs.base import Env, EnvSpec, EnvState, TimeStep
from jaxrl.errors import ConfigError, UnknownEnv
from jaxrl.host import route_mujoco_warnings

SUITES = ("gymnax", "brax", "playground")


def make_env(suite: str, name: str, backend: str | None = None, episode_length: int | None = None) -> Env:
    """Builds an env: `suite` is "gymnax", "brax" or "playground"; `name` the suite's env name.

    `backend` is Brax's physics pipeline (None: "positional"), or Playground's
    MJX implementation (None: "jax"; or "warp"); gymnax has none. `episode_length` is the time limit;
    None keeps the env's own (gymnax, Playground) or 1000 (Brax).
    """
    if episode_length is not None and episode_length <= 0:
        raise ConfigError(f"env.episode_length must be positive, got {episode_length}")
    try:
        return _make(suite, name, backend, episode_length)
    except UnknownEnv as err:
        # `env.name=ant` alone keeps the default suite, gymnax: say where the name is
        for other in SUITES:
            if other != suite and name in env_names(other):
                raise UnknownEnv(f"unknown {suite} env {name!r}; it is a {other} env: give env={other} env.name={name}") from None
        raise err from None


def env_names(suite: str) -> list[str]:
    """The env names `suite` ("gymnax", "brax", "playground") has; [] when it is
    not installed (Playground is optional)."""
    if suite == "gymnax":
        from jaxrl.envs.gymnax_env import gymnax

        return list(gymnax.registered_envs)
    if suite == "brax":
        from brax import envs

        return sorted(envs._envs)  # noqa: SLF001 (brax lists its registry nowhere public)
    try:
        from mujoco_playground import registry
    except ImportError:
        return []
    return list(registry.ALL_ENVS)


def _make(suite: str, name: str, backend: str | None, episode_length: int | None) -> Env:
    if suite == "gymnax":
        from jaxrl.envs.gymnax_env import GymnaxEnv

        return GymnaxEnv(name, episode_length)
    if suite in ("brax", "playground"):
        # both load MuJoCo models, whose warnings would go to a file in the working directory
        route_mujoco_warnings()
    if suite == "brax":
        from jaxrl.envs.brax_env import BraxEnv

        return BraxEnv(name, backend=backend or "positional", episode_length=episode_length or 1000)
    if suite == "playground":
        from jaxrl.envs.playground_env import PlaygroundEnv

        return PlaygroundEnv(name, impl=backend or "jax", episode_length=episode_length)
    raise ConfigError(f"unknown env.suite {suite!r}; choose one of: {', '.join(SUITES)}")


__all__ = ["SUITES", "Env", "EnvSpec", "EnvState", "TimeStep", "env_names", "make_env"]
