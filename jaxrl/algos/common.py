"""Pure pieces the algorithms share.

On-policy: GAE, a function over the few rows a mask picks, flattening a
rollout, shuffled minibatches and the epochs x minibatches loop. All
algorithms: the clipped Adam step with a traced learning rate, its state,
and linear learning-rate decay.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: jax.Array,
    lam: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over a rollout.

    All inputs are [T, B]. `next_values[t]` is the value of the state reached by
    step t before any reset (the next observation's value, or the value of the
    pre-reset final observation where the episode was truncated), so a time
    limit bootstraps and a true terminal state does not. `done` cuts the
    advantage recursion at every episode end.
    Returns (advantages [T, B], returns [T, B] = advantages + values).
    """
    not_terminal = 1.0 - terminated.astype(values.dtype)
    not_done = 1.0 - done.astype(values.dtype)
    deltas = rewards + gamma * next_values * not_terminal - values

    def backward(carry, inputs):
        delta, cont = inputs
        adv = delta + gamma * lam * cont * carry
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(values[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + values


def apply_where(fn, x: jax.Array, mask: jax.Array, max_rows: int) -> jax.Array:
    """fn over the rows of x where mask holds, zeros elsewhere, computing fn on
    at most `max_rows` rows rather than all N.

    x: [N, ...]; mask: [N] bool, true on at most `max_rows` rows (the caller's
    bound: rows past the first `max_rows` true ones would get zeros);
    fn: [M, ...] -> [M]. Returns [N].
    """
    n = mask.shape[0]
    if max_rows >= n:
        return jnp.where(mask, fn(x), 0.0)
    # indices of the true rows; the unused slots point past the end, and the
    # scatter drops them
    (rows,) = jnp.nonzero(mask, size=max_rows, fill_value=n)
    values = fn(jnp.take(x, rows, axis=0, mode="clip"))
    return jnp.zeros(n, values.dtype).at[rows].set(values, mode="drop")


def flatten_steps(tree):
    """Merges the two leading axes of every leaf: [T, B, ...] -> [T * B, ...]."""
    return jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), tree)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of range(n): [n] int32.

    On XLA:CPU, jax.random.permutation sorts (key, index) pairs with a
    compiled comparator: 1.2 ms for 4,096 rows on a 2-core machine, once per
    PPO epoch. A sort of plain uint32s takes a tenth of that, so each round
    here sorts random bits with the row's position packed into the low bits:
    a stable sort by the random part. R stable rounds sort by all R random
    parts at once, and there are as many rounds as jax's rule asks for keys
    that wide, which makes the order ties keep negligible. Other platforms
    keep jax's.
    """

    def jax_permutation(key):
        return jax.random.permutation(key, n).astype(jnp.int32)

    position_bits = max(1, (n - 1).bit_length())
    if position_bits > 24:  # under 8 random bits a round would need 9 rounds or more
        return jax_permutation(key)
    rounds = max(1, math.ceil(3 * math.log(max(n, 2)) / math.log(2 ** (32 - position_bits))))
    positions = jnp.arange(n, dtype=jnp.uint32)

    def packed_sorts(key):
        perm = jnp.arange(n, dtype=jnp.int32)
        for round_key in jax.random.split(key, rounds):
            packed = (jax.random.bits(round_key, (n,), jnp.uint32) << position_bits) | positions
            perm = perm[(jnp.sort(packed) & (2**position_bits - 1)).astype(jnp.int32)]
        return perm

    return jax.lax.platform_dependent(key, cpu=packed_sorts, default=jax_permutation)


def minibatches(key: jax.Array, batch, num_minibatches: int):
    """Shuffles a pytree of [N, ...] arrays and splits it into [num_minibatches, N // num_minibatches, ...]."""
    n = jax.tree.leaves(batch)[0].shape[0]
    perm = permutation(key, n)
    return jax.tree.map(lambda x: x[perm].reshape((num_minibatches, n // num_minibatches, *x.shape[1:])), batch)


def epochs_of_minibatches(step_fn, carry, batch, key: jax.Array, num_epochs: int, num_minibatches: int):
    """`num_epochs` passes over `batch` (a pytree of [N, ...] arrays), each in
    `num_minibatches` shuffled minibatches of [N // num_minibatches, ...].

    step_fn(carry, minibatch) -> (carry, metrics of [] scalars) is scanned
    over each epoch's minibatches; every epoch shuffles with its own split of
    `key`. Returns (carry, metrics averaged over all the steps).
    """

    def epoch(carry, epoch_key):
        return jax.lax.scan(step_fn, carry, minibatches(epoch_key, batch, num_minibatches))

    carry, metrics = jax.lax.scan(epoch, carry, jax.random.split(key, num_epochs))
    return carry, jax.tree.map(jnp.mean, metrics)


def _adam(lr: jax.Array, max_grad_norm: jax.Array, eps: float) -> optax.GradientTransformation:
    # Rebuilt from traced scalars at every step: clipping and scaling are
    # stateless and Adam's state depends on neither, so a population of
    # learning rates or clip norms can be vmapped.
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.scale_by_adam(eps=eps), optax.scale(-lr))


def clipped_adam_step(params, opt_state, grads, lr: jax.Array, max_grad_norm: jax.Array = jnp.inf, eps: float = 1e-5):
    """One Adam step with a traced learning rate, after global-norm gradient
    clipping (`max_grad_norm` inf: none).

    eps 1e-5 is the on-policy implementations' choice; the off-policy ones
    use Adam's own 1e-8. Returns (params, opt_state, grad_norm []).
    """
    updates, opt_state = _adam(lr, max_grad_norm, eps).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, optax.global_norm(grads)


def adam_state(params):
    """The optimiser state `clipped_adam_step` expects for `params` (any lr, clip and eps)."""
    return _adam(1.0, 1.0, 1e-8).init(params)


def linear_decay(lr: jax.Array, update_idx: jax.Array, num_updates: int, anneal: bool) -> jax.Array:
    """lr annealed linearly from `lr` to 0 over `num_updates` updates when `anneal`."""
    if not anneal:
        return lr
    return lr * (1.0 - update_idx.astype(jnp.float32) / num_updates)
