"""Adapter from MuJoCo Playground (`mujoco_playground`, pip `playground<1`) to
the jaxrl env contract.

Playground is the maintained home of JAX MuJoCo tasks (DeepMind Control Suite,
locomotion, manipulation); Brax's own envs are no longer maintained. Its envs
default to the MuJoCo Warp implementation, which on 2 CPU cores makes about
24 HumanoidWalk steps per second (4 envs); the JAX implementation (`impl="jax"`,
MJX) makes about 2,400 (64 envs), so jax is the default here and warp is for
NVIDIA GPUs. The time limit and auto-reset are done here (as for Brax),
so that truncation is kept apart from termination and the pre-reset
observation is kept to bootstrap from.
"""

from __future__ import annotations

import subprocess
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.envs.base import EnvSpec, EnvState, Frames, TimeStep, auto_reset, frame_indices, initial_state, scale_action
from jaxrl.envs.mujoco_gl import draw
from jaxrl.errors import ConfigError, UnknownEnv

IMPLS = ("jax", "warp")
# Playground envs with dict observations give the policy's under this key
# (the rest, e.g. "privileged_state", is for asymmetric critics).
POLICY_OBS_KEY = "state"


def _registry():
    try:
        from mujoco_playground import registry
    except ImportError as err:
        raise ConfigError(
            f"env.suite=playground needs MuJoCo Playground, which is not installed ({err}); "
            "install it with: pip install -e '.[playground]' in jaxrl's checkout (or: pip install 'playground>=0.2,<1')"
        ) from None
    return registry


def _menagerie_failure(name: str, err: BaseException) -> str:
    """Why `name` failed to load when Playground's clone of MuJoCo Menagerie failed, and the fix."""
    from mujoco_playground._src import mjx_env

    return (
        f"playground env {name!r} needs robot models from MuJoCo Menagerie, which Playground clones "
        f"from GitHub the first time, and the clone failed ({type(err).__name__}: {str(err).rstrip('.')}). Run it once "
        "with internet access, or clone https://github.com/deepmind/mujoco_menagerie at commit "
        f"{mjx_env.MENAGERIE_COMMIT_SHA} into {mjx_env.MENAGERIE_PATH}. The Control Suite's tasks "
        "(CartpoleBalance, HumanoidWalk, ...) need no download."
    )


class PlaygroundEnv:
    """A MuJoCo Playground environment behind the jaxrl contract (see `jaxrl.envs.base`).

    name: a Playground env name, e.g. "HumanoidWalk", "CartpoleBalance".
    impl: MJX implementation, "jax" (any device) or "warp" (NVIDIA GPUs).
    episode_length: the time limit; None keeps the env's own (1000 for the
        Control Suite).
    """

    def __init__(self, name: str, impl: str = "jax", episode_length: int | None = None):
        registry = _registry()
        if name not in registry.ALL_ENVS:
            raise UnknownEnv(f"unknown playground env {name!r}; playground knows: {', '.join(registry.ALL_ENVS)}")
        if impl not in IMPLS:
            raise ConfigError(f"unknown playground impl env.backend={impl!r}; choose one of: {', '.join(IMPLS)}")
        self.name = name
        config = registry.get_default_config(name)
        if "impl" in config:
            overrides = {"impl": impl}
        elif impl == "jax":
            overrides = {}
        else:
            raise ConfigError(f"playground env {name!r} has no choice of MJX implementation; leave env.backend at jax")
        try:
            self.env = registry.load(name, config_overrides=overrides)
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            raise ConfigError(_menagerie_failure(name, err)) from None
        obs = jax.eval_shape(self.env.reset, jax.random.PRNGKey(0)).obs
        if isinstance(obs, dict):
            if POLICY_OBS_KEY not in obs:
                raise ConfigError(
                    f"playground env {name!r} has observations {sorted(obs)} and none named {POLICY_OBS_KEY!r}, "
                    "the policy's; jaxrl cannot tell which to act on"
                )
            obs = obs[POLICY_OBS_KEY]
        if len(obs.shape) != 1:
            raise ConfigError(
                f"playground env {name!r} observes arrays of shape {obs.shape}; jaxrl's networks are MLPs "
                "over vectors, so pixel observations are not supported"
            )
        action_dim = int(self.env.action_size)
        # Playground's envs take actions in [-1, 1] and map them to their
        # actuators themselves (a joint's default pose plus a scaled offset, say)
        self.spec = EnvSpec(
            obs_shape=tuple(obs.shape),
            action_dim=action_dim,
            discrete=False,
            action_low=(-1.0,) * action_dim,
            action_high=(1.0,) * action_dim,
            max_episode_steps=int(episode_length or config.episode_length),
        )

    def _obs(self, obs: Any) -> jax.Array:
        obs = obs[POLICY_OBS_KEY] if isinstance(obs, dict) else obs
        return obs.astype(jnp.float32)

    def reset(self, key: jax.Array) -> tuple[EnvState, jax.Array]:
        """Starts an episode: (state, obs [obs_size] float32)."""
        inner = self.env.reset(key)
        return initial_state(inner), self._obs(inner.obs)

    def step(self, key: jax.Array, state: EnvState, action: jax.Array) -> tuple[EnvState, TimeStep]:
        """One step with a normalised action [action_size] in [-1, 1]."""
        stepped = self.env.step(state.inner, scale_action(self.spec, action))
        return auto_reset(self.spec, state, stepped, self.env.reset(key), self._obs)

    def render_unavailable(self) -> str | None:
        """None: every Playground env can be drawn (OpenGL permitting, which only `render` finds out)."""
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
        """Renders a recorded episode (host arrays [T, ...] from `jaxrl.video.rollout`) with MuJoCo,
        from the model's first camera, which follows the body in the Control Suite's walkers.

        An episode longer than `max_frames` is subsampled (`base.frame_indices`).
        Returns Frames [<= max_frames + 1, height, width, 3] uint8 (default 320x240).
        Raises RenderUnavailable when MuJoCo has no OpenGL platform.
        """
        width, height = width or 320, height or 240
        # its states before each step, 0..T-1 (the state after the last is not kept: auto-reset)
        indices, stride = frame_indices(int(np.asarray(steps.reward).shape[0]) - 1, max_frames)
        data = states.inner.data
        frames = draw(lambda: self._draw(data, indices, width, height), width, height)
        return Frames(frames, 1.0 / (float(self.env.dt) * stride))

    def _draw(self, data: Any, indices: np.ndarray, width: int, height: int) -> list[np.ndarray]:
        # Playground's own `render` does the same but prints a progress bar.
        import mujoco

        model = self.env.mj_model
        scratch = mujoco.MjData(model)
        renderer = mujoco.Renderer(model, height=height, width=width)
        camera = 0 if model.ncam else -1  # the model's first camera (its author's main view), else the free one
        frames = []
        try:
            for t in indices:
                scratch.qpos, scratch.qvel = data.qpos[t], data.qvel[t]
                scratch.mocap_pos, scratch.mocap_quat = data.mocap_pos[t], data.mocap_quat[t]
                mujoco.mj_forward(model, scratch)
                renderer.update_scene(scratch, camera=camera)
                frames.append(renderer.render())
        finally:
            renderer.close()
        return frames
