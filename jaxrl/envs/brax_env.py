"""Adapter from `brax.envs` to the jaxrl env contract.

Only `brax.envs` is used: `brax.training` does not run on current jax (see
it calls `jax.device_put_replicated`, which jax has removed). The time limit and auto-reset are done here rather than with Brax's
wrappers because Brax's AutoResetWrapper restarts every episode from one cached
state and drops the pre-reset observation needed to bootstrap on truncation.
Frames and the HTML viewer come from `brax_render`, beside it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from brax import envs as brax_envs

from jaxrl.envs.base import EnvSpec, EnvState, Frames, TimeStep, auto_reset, frame_indices, initial_state, scale_action
from jaxrl.envs.brax_render import brax_frames, brax_html
from jaxrl.errors import ConfigError, UnknownEnv

BACKENDS = ("generalized", "positional", "spring", "mjx")


class BraxEnv:
    """A Brax environment behind the jaxrl contract (see `jaxrl.envs.base`)."""

    def __init__(self, name: str, backend: str = "positional", episode_length: int = 1000):
        known = sorted(brax_envs._envs)
        if name not in known:
            raise UnknownEnv(f"unknown brax env {name!r}; brax knows: {', '.join(known)}")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown brax backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.name = name
        self.backend = backend
        self.env = brax_envs.get_environment(name, backend=backend)
        ctrl = jax.device_get(self.env.sys.actuator.ctrl_range)
        limited = ctrl.shape[0] == self.env.action_size and bool((ctrl[:, 1] > ctrl[:, 0]).all())
        low = tuple(float(x) for x in ctrl[:, 0]) if limited else (-1.0,) * self.env.action_size
        high = tuple(float(x) for x in ctrl[:, 1]) if limited else (1.0,) * self.env.action_size
        # Brax's `observation_size` runs `reset` eagerly, op by op: 15 s for the humanoid on a CPU;
        # its shape alone costs a trace
        obs = jax.eval_shape(self.env.reset, jax.random.PRNGKey(0)).obs
        self.spec = EnvSpec(
            obs_shape=(int(obs.shape[-1]),),
            action_dim=int(self.env.action_size),
            discrete=False,
            action_low=low,
            action_high=high,
            max_episode_steps=int(episode_length),
        )

    def reset(self, key: jax.Array) -> tuple[EnvState, jax.Array]:
        """Starts an episode: (state, obs [obs_size] float32)."""
        inner = self.env.reset(key)
        return initial_state(inner), inner.obs.astype(jnp.float32)

    def step(self, key: jax.Array, state: EnvState, action: jax.Array) -> tuple[EnvState, TimeStep]:
        """One step with a normalised action [action_size] in [-1, 1]."""
        stepped = self.env.step(state.inner, scale_action(self.spec, action))
        return auto_reset(self.spec, state, stepped, self.env.reset(key), lambda obs: obs.astype(jnp.float32))

    def render_unavailable(self) -> str | None:
        """None: every Brax env can be drawn (OpenGL permitting, which only `render` finds out)."""
        return None

    def render(
        self,
        states: EnvState,
        steps: TimeStep,
        *,
        width: int | None = None,
        height: int | None = None,
        max_frames: int = 250,
    ) -> Frames:
        """Renders a recorded episode (host arrays [T, ...] from `jaxrl.video.rollout`) with MuJoCo.

        An episode longer than `max_frames` is subsampled (`base.frame_indices`).
        Returns Frames [<= max_frames + 1, height, width, 3] uint8 (default 320x240).
        Raises RenderUnavailable when MuJoCo has no OpenGL platform.
        """
        # its states before each step, 0..T-1 (the state after the last is not kept: auto-reset)
        indices, stride = frame_indices(int(np.asarray(steps.reward).shape[0]) - 1, max_frames)
        picked = jax.tree.map(lambda x: x[indices], states.inner.pipeline_state)
        frames = brax_frames(self.env.sys, picked, width=width or 320, height=height or 240)
        return Frames(frames, 1.0 / (float(self.env.dt) * stride))

    def render_html(self, states: EnvState, steps: TimeStep) -> str:
        """Brax's interactive viewer of every state of a recorded episode; needs no OpenGL."""
        del steps
        return brax_html(self.env.sys, states.inner.pipeline_state)
