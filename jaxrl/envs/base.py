"""The environment contract every algorithm is written against.

One environment, one episode stream: algorithms `jax.vmap` the functions over
`num_envs`. Actions are given in a normalised space: continuous actions live in
[-1, 1]^action_dim and the adapter rescales and clips them to the backend's
bounds; discrete actions are integers in [0, num_actions). Episodes reset
automatically, and `terminated` (a true end: do not bootstrap) is kept apart
from `truncated` (a time limit: bootstrap from `final_obs`).

Drawing is part of the contract too, as optional host-side methods: each
adapter family draws its own recorded episodes (`Env.render`), so that
`jaxrl.video` needs to know nothing about any backend.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Protocol

import jax
import numpy as np
from flax import struct


@struct.dataclass
class EnvSpec:
    """Static facts about an environment (no array leaves).

    obs_shape: shape of one observation, e.g. (2,).
    action_dim: continuous action size, or number of discrete actions.
    discrete: whether actions are integers.
    action_low/action_high: the backend's bounds, one float per action dimension
        (empty for discrete envs); used to rescale [-1, 1] actions.
    max_episode_steps: time limit after which an episode is truncated.
    native_obs_shape: the backend's own observation shape where it differs
        from obs_shape (gymnax's MinAtar images [10, 10, C], flattened for the
        MLPs), so that a policy can take the env's observations as they come
        and `algo.conv` layers see images; None where they are the same.
    """

    obs_shape: tuple[int, ...] = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)
    discrete: bool = struct.field(pytree_node=False)
    action_low: tuple[float, ...] = struct.field(pytree_node=False)
    action_high: tuple[float, ...] = struct.field(pytree_node=False)
    max_episode_steps: int = struct.field(pytree_node=False)
    native_obs_shape: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)


@struct.dataclass
class EnvState:
    """Per-environment state: the backend's state plus episode statistics.

    inner: the backend state (gymnax `EnvState`, brax `State` or Playground `State`).
    episode_return: [] float32, return of the running episode so far.
    episode_length: [] int32, steps of the running episode so far.
    """

    inner: Any
    episode_return: jax.Array
    episode_length: jax.Array


class TimeStep(NamedTuple):
    """What one step returns (shapes for a single env; vmapped adds [B]).

    obs: [*obs_shape] next observation; the first one of a new episode if this
        step ended the previous one.
    reward: [] float32.
    terminated: [] bool, the episode reached a terminal state.
    truncated: [] bool, the episode hit the time limit without terminating;
        only there (episode_length == spec.max_episode_steps): the on-policy
        trainers count on it to bound how many steps bootstrap from final_obs.
    final_obs: [*obs_shape] observation reached by this step, before any reset;
        the state to bootstrap from when `truncated`.
    episode_return: [] float32, return of the episode that ended at this step
        (meaningful where `terminated | truncated`).
    episode_length: [] int32, its length in steps.
    """

    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        """[] bool: the episode ended here, for either reason."""
        return self.terminated | self.truncated


class RenderUnavailable(RuntimeError):
    """An env cannot draw frames here; `reason` says why and what to do about it.

    Raised by `Env.render` when the env has no drawer (most gymnax envs) or
    its renderer cannot start (MuJoCo without an OpenGL platform).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Frames(NamedTuple):
    """A drawn episode.

    frames: [T, H, W, 3] uint8 RGB images.
    fps: the rate to play them at: real time where the env has a physical
        time step (Brax), else a customary rate (gym's 30 for MountainCar).
    """

    frames: np.ndarray
    fps: float


def frame_indices(last: int, max_frames: int) -> tuple[np.ndarray, int]:
    """Which of an episode's states 0..`last` to draw, and the stride k between them.

    Renderers draw every k-th state (k = ceil(last / max_frames)), the last
    one always kept, so a video holds at most `max_frames` + 1 frames and an
    episode of at most `max_frames` steps is drawn whole: software OpenGL
    costs about 0.1 s a frame at 320x240 on a small CPU, and every frame is
    held in memory until it is encoded. Divide the fps by k so the video
    still plays in real time.
    Returns (indices [<= max_frames + 1] int in 0..last, k).
    """
    stride = max(1, math.ceil(last / max_frames))
    indices = list(range(0, last + 1, stride))
    if indices[-1] != last:
        indices.append(last)
    return np.asarray(indices), stride


class Env(Protocol):
    """A pure, jittable single environment.

    `reset` and `step` are required. The `render*` methods are optional and run
    on the host, on the NumPy arrays `jaxrl.video.rollout` returns: an env
    without them is simply never filmed.
    """

    spec: EnvSpec
    name: str

    def reset(self, key: jax.Array) -> tuple[EnvState, jax.Array]:
        """Starts an episode: returns (state, obs [*obs_shape])."""
        ...

    def step(self, key: jax.Array, state: EnvState, action: jax.Array) -> tuple[EnvState, TimeStep]:
        """Advances one step with a normalised action; auto-resets at episode end."""
        ...

    def render_unavailable(self) -> str | None:
        """Optional: why this env has no drawer, else None.

        Cheap, so that a caller can skip playing an episode nobody can see; a
        renderer that fails only when started (no OpenGL) shows in `render`.
        """
        ...

    def render(
        self,
        states: EnvState,
        steps: TimeStep,
        *,
        width: int | None = None,
        height: int | None = None,
        max_frames: int = 250,
    ) -> Frames:
        """Optional: draws a recorded episode.

        states, steps: host arrays with a leading time axis [T], as returned by
            `jaxrl.video.rollout` (`states[t]` before step t, `steps[t]` its
            result; the episode ends at T - 1).
        width, height: frame size; None for the env's default.
        max_frames: draw at most this many states + 1: a longer episode is
            drawn every k-th state, with `fps` lowered to match (`frame_indices`).
        Returns Frames with frames [T', height, width, 3] uint8.
        Raises RenderUnavailable when the env cannot be drawn here.
        """
        ...

    def render_html(self, states: EnvState, steps: TimeStep) -> str:
        """Optional: an HTML page that replays the episode (states, steps as
        for `render`) without OpenGL; the fallback where `render` cannot run."""
        ...


def scale_action(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """Maps a normalised action [action_dim] in [-1, 1] to the env's bounds.

    Values outside [-1, 1] (a Gaussian sample, say) are clipped first, so the
    backend never sees an out-of-range action. Discrete actions pass through.
    """
    if spec.discrete:
        return action
    low = jax.numpy.asarray(spec.action_low, dtype=action.dtype)
    high = jax.numpy.asarray(spec.action_high, dtype=action.dtype)
    clipped = jax.numpy.clip(action, -1.0, 1.0)
    return low + (clipped + 1.0) * 0.5 * (high - low)


def end_of_step(
    state_inner: Any,
    prev: EnvState,
    obs: jax.Array,
    reward: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    final_obs: jax.Array,
) -> tuple[EnvState, TimeStep]:
    """Updates episode statistics after a backend step and builds the TimeStep.

    `state_inner` must already be reset where the episode ended; the running
    return and length restart from zero there.
    """
    jnp = jax.numpy
    done = terminated | truncated
    ep_return = prev.episode_return + reward
    ep_length = prev.episode_length + 1
    state = EnvState(
        inner=state_inner,
        episode_return=jnp.where(done, 0.0, ep_return),
        episode_length=jnp.where(done, 0, ep_length),
    )
    step = TimeStep(
        obs=obs,
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        final_obs=final_obs,
        episode_return=ep_return,
        episode_length=ep_length,
    )
    return state, step


def auto_reset(
    spec: EnvSpec, prev: EnvState, stepped: Any, fresh: Any, obs: Callable[[Any], jax.Array]
) -> tuple[EnvState, TimeStep]:
    """Ends a step of a backend whose states carry `obs`, `reward` and `done`
    (Brax, MuJoCo Playground): the time limit truncates, the state restarts
    from `fresh` where the episode ended, and the pre-reset observation is kept.

    prev: the EnvState the step started from; stepped: the backend state after
    the step; fresh: a newly reset backend state; obs: the backend's
    observation -> [*obs_shape] float32.
    """
    jnp = jax.numpy
    terminated = stepped.done.astype(bool)
    truncated = jnp.logical_and(prev.episode_length + 1 >= spec.max_episode_steps, ~terminated)
    done = terminated | truncated
    inner = jax.tree.map(lambda r, s: jnp.where(done, r, s), fresh, stepped)
    reward = jnp.asarray(stepped.reward, jnp.float32)
    return end_of_step(inner, prev, obs(inner.obs), reward, terminated, truncated, obs(stepped.obs))


def initial_state(inner: Any) -> EnvState:
    """Wraps a freshly reset backend state with zeroed episode statistics."""
    jnp = jax.numpy
    return EnvState(inner=inner, episode_return=jnp.zeros((), jnp.float32), episode_length=jnp.zeros((), jnp.int32))
