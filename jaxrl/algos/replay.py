"""The replay buffer: flashbax's item buffer, held in device memory inside the train state.

flashbax 0.1.3 is pure (state in, state out), uses `jax.tree.map` rather than
the removed `jax.tree_map`, and was checked to work on jax 0.10.2 under
`jit(scan(vmap(...)))` with one buffer per vmapped seed, giving the same
samples for a seed alone and inside a batch. Its item buffer keeps one flat
ring of `capacity` transitions, overwrites the oldest once full, and samples
uniformly (with replacement) from the valid entries only.
"""

from __future__ import annotations

import flashbax as fbx
import jax
from flax import struct


@struct.dataclass
class Transition:
    """One step of experience (leading [N] axes when batched).

    obs: [*obs_shape] raw observation the action was taken in.
    action: [action_dim] normalised action in [-1, 1] actually sent to the env.
    reward: [] float32, unscaled.
    next_obs: [*obs_shape] raw observation reached, before any auto-reset (the
        env's `final_obs`): what the TD target bootstraps from.
    terminated: [] float32, 1 where the episode truly ended (no bootstrap); a
        time-limit truncation is 0, so it bootstraps from `next_obs`.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


def make_buffer(capacity: int, batch_size: int) -> fbx.trajectory_buffer.TrajectoryBuffer:
    """A uniform replay buffer of `capacity` transitions sampling `batch_size` at a time.

    buffer.init(example Transition of unbatched leaves) -> state;
    buffer.add(state, Transition of [N, ...] leaves) -> state, N <= capacity;
    buffer.sample(state, key).experience -> Transition of [batch_size, ...] leaves.
    """
    return fbx.make_item_buffer(max_length=capacity, min_length=1, sample_batch_size=batch_size, add_batches=True)
