"""Natural-gradient building blocks: conjugate gradient and Fisher-vector products.

Pure functions on flat parameter vectors ([D]); `jax.flatten_util.ravel_pytree`
turns a params pytree into one. Everything uses `lax` control flow with static
iteration bounds, so it jits once and vmaps over seeds and hyperparameters.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["conjugate_gradient", "fisher_vector_product"]


def conjugate_gradient(
    matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int, tol: float = 1e-10
) -> jax.Array:
    """Approximately solves A x = b for a symmetric positive-definite A.

    matvec: x [D] -> A x [D], the only access to A (never built).
    b: [D]. iters: at most this many iterations (exact after D in exact
    arithmetic). Stops early once the squared residual |b - A x|^2 <= tol.
    Returns x [D], starting from x = 0.
    """

    def cond(carry):
        i, _, _, _, r_dot_r = carry
        return (i < iters) & (r_dot_r > tol)

    def body(carry):
        i, x, r, p, r_dot_r = carry
        a_p = matvec(p)
        alpha = r_dot_r / jnp.vdot(p, a_p)
        x = x + alpha * p
        r = r - alpha * a_p
        new_r_dot_r = jnp.vdot(r, r)
        p = r + (new_r_dot_r / r_dot_r) * p
        return i + 1, x, r, p, new_r_dot_r

    init = (jnp.zeros((), jnp.int32), jnp.zeros_like(b), b, b, jnp.vdot(b, b))
    return jax.lax.while_loop(cond, body, init)[1]


def fisher_vector_product(
    kl_fn: Callable[[jax.Array], jax.Array], params: jax.Array, damping: jax.Array
) -> Callable[[jax.Array], jax.Array]:
    """v [D] -> (F + damping I) v [D], without ever forming the [D, D] Fisher F.

    kl_fn: flat params [D] -> [] mean KL(pi_old || pi_params) over a batch of
    states, where pi_old is held fixed. At params = the old params the KL and
    its gradient vanish and its Hessian is the Fisher information matrix, so
    F v is a Hessian-vector product: forward-mode (jvp) over the reverse-mode
    gradient (vjp). `jax.linearize` does the forward pass once, so each of
    conjugate gradient's products costs only the linear part.
    damping: [] >= 0, Tikhonov damping that keeps the system well conditioned
    where the batch does not pin the Fisher down.
    """
    _, hvp = jax.linearize(jax.grad(kl_fn), params)
    return lambda v: hvp(v) + damping * v
