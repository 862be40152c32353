"""Adapter from gymnax (>= 1.0, six-value `step`) to the jaxrl env contract.

Frames come from the drawers beside it (`gymnax_render`): gym's
classic-control scenes and the board games; the other gymnax envs have none.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.envs import gymnax_render
from jaxrl.envs.base import (
    EnvSpec,
    EnvState,
    Frames,
    RenderUnavailable,
    TimeStep,
    end_of_step,
    initial_state,
    scale_action,
)
from jaxrl.errors import ConfigError, UnknownEnv


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in for a module that is imported when one of its attributes is first read."""

    def __getattr__(self, attr: str):
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


@contextlib.contextmanager
def _deferred_import(name: str) -> Iterator[None]:
    """Within the block, `import <name>` gives a stand-in that imports the module when first used;
    after it, `import <name>` is the real import again."""
    if name in sys.modules:
        yield
        return
    stand_in = _ImportedOnFirstUse(name)
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


# gymnax imports seaborn (with pandas and scipy.stats, about a second of every run's start) for
# the colours of Pong's own matplotlib renderer alone, which jaxrl never calls: seaborn now loads
# only if that renderer runs.
with _deferred_import("seaborn"):
    import gymnax


class GymnaxEnv:
    """A gymnax environment behind the jaxrl contract (see `jaxrl.envs.base`).

    Observations are flattened to vectors (MinAtar's [10, 10, C] images
    included), since jaxrl's networks are MLPs. `episode_length` replaces the
    env's own time limit when given.
    """

    def __init__(self, name: str, episode_length: int | None = None):
        if name not in gymnax.registered_envs:
            raise UnknownEnv(f"unknown gymnax env {name!r}; gymnax knows: {', '.join(gymnax.registered_envs)}")
        self.name = name
        try:
            self.env, self.params = gymnax.make(name)
        except (OSError, EOFError) as err:  # MNISTBandit-bsuite downloads MNIST when it is built
            # a failed download can leave a partial file, which gymnax then reads instead (EOFError, BadGzipFile)
            raise ConfigError(
                f"gymnax could not build {name!r}: it downloads its data the first time, and that failed "
                f"({type(err).__name__}: {err}); delete any partial files in /tmp/mnist (where gymnax keeps "
                "MNIST) and build it once where the internet can be reached"
            ) from None
        if episode_length is not None:
            # in the env's own type: BernoulliBandit-misc's is a float, and its state's dtypes derive from it
            own = type(self.params.max_steps_in_episode)
            self.params = self.params.replace(max_steps_in_episode=own(episode_length))
        obs_space = self.env.observation_space(self.params)
        act_space = self.env.action_space(self.params)
        discrete = hasattr(act_space, "n")
        if discrete:
            action_dim, low, high = int(act_space.n), (), ()
        else:
            shape = act_space.shape or (1,)
            action_dim = int(np.prod(shape))
            low = tuple(float(x) for x in np.broadcast_to(np.asarray(act_space.low, np.float32), shape).ravel())
            high = tuple(float(x) for x in np.broadcast_to(np.asarray(act_space.high, np.float32), shape).ravel())
        self._action_shape = tuple(act_space.shape or ())
        obs_shape = (int(np.prod(obs_space.shape)),)
        self.spec = EnvSpec(
            obs_shape=obs_shape,
            action_dim=action_dim,
            discrete=discrete,
            action_low=low,
            action_high=high,
            max_episode_steps=int(self.params.max_steps_in_episode),
            native_obs_shape=None if tuple(obs_space.shape) == obs_shape else tuple(obs_space.shape),
        )

    def reset(self, key: jax.Array) -> tuple[EnvState, jax.Array]:
        """Starts an episode: (state, obs [*obs_shape] float32)."""
        obs, inner = self.env.reset(key, self.params)
        # some gymnax resets return weak-typed leaves that a step makes strong;
        # fixing the types here keeps a jitted update from compiling twice
        inner = jax.tree.map(lambda x: jnp.asarray(x, x.dtype), inner)
        return initial_state(inner), obs.reshape(-1).astype(jnp.float32)

    def step(self, key: jax.Array, state: EnvState, action: jax.Array) -> tuple[EnvState, TimeStep]:
        """One step with a normalised action ([action_dim] in [-1, 1], or an int)."""
        backend_action = scale_action(self.spec, action)
        if not self.spec.discrete:
            backend_action = backend_action.reshape(self._action_shape)
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state.inner, backend_action, self.params)
        # gymnax counts a step that both terminates and hits the limit as both;
        # a true terminal state must not be bootstrapped, so termination wins.
        truncated = jnp.logical_and(truncated, jnp.logical_not(terminated))
        return end_of_step(
            inner,
            state,
            obs.reshape(-1).astype(jnp.float32),
            jnp.asarray(reward, jnp.float32).reshape(()),
            jnp.asarray(terminated, bool).reshape(()),
            jnp.asarray(truncated, bool).reshape(()),
            info["final_observation"].reshape(-1).astype(jnp.float32),
        )

    def render_unavailable(self) -> str | None:
        """Why this env has no drawer (one not in `gymnax_render.ENVS`), else None."""
        if self.name in gymnax_render.ENVS:
            return None
        return f"no renderer for {self.name!r}: among gymnax envs jaxrl draws {', '.join(gymnax_render.ENVS)}"

    def render(
        self,
        states: EnvState,
        steps: TimeStep,
        *,
        width: int | None = None,
        height: int | None = None,
        max_frames: int = 250,
    ) -> Frames:
        """Draws a recorded episode (host arrays [T, ...] from `jaxrl.video.rollout`).

        Returns Frames [<= max_frames + 1, height, width, 3] uint8: every state
        and the final one at the env's size and fps (`gymnax_render`), or every
        k-th of them with the fps divided by k where there are more
        (`base.frame_indices`). Raises RenderUnavailable for an env without a drawer.
        """
        reason = self.render_unavailable()
        if reason is not None:
            raise RenderUnavailable(reason)
        native = self.spec.native_obs_shape or self.spec.obs_shape
        return gymnax_render.render_episode(
            self.name, self.env, self.params, native, states, steps, width=width, height=height, max_frames=max_frames
        )
