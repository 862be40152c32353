"""A conv layer on MinAtar's boards: XLA's convolution op against `jaxrl.networks.patches` and one product.

The layer of MinAtar's reference network (16 maps, 3x3 kernel, stride 1) on a
PPO minibatch of 128 boards [10, 10, 4], then tanh: forward and backward (the
gradients of the kernel and of the input) for 50 minibatches inside one jitted
scan, the minibatches fed as scan inputs as PPO's learning phase feeds them.
Both ways compute the same numbers (checked first); each round times both,
alternating. Prints the medians in microseconds per minibatch and their ratio.

    python bench/bench_conv.py [--rounds 5] [--batch 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jaxrl  # noqa: F401  (the CPU scheduler flag jaxrl's runs use, set before jax starts)
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.networks import patches

IMAGE, FEATURES, KERNEL = (10, 10, 4), 16, 3


def xla_conv(images: jax.Array, kernel: jax.Array) -> jax.Array:
    """images [B, 10, 10, 4], kernel [3, 3, 4, 16] -> [B, 8, 8, 16]."""
    return jax.lax.conv_general_dilated(images, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def patch_conv(images: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same layer as jaxrl's torso computes it."""
    return patches(images, KERNEL, 1) @ kernel.reshape(-1, FEATURES)


def timed(layer, kernel: jax.Array, batches: jax.Array) -> float:
    """Seconds per minibatch of forward + backward, the scan compiled beforehand."""

    def loss(kernel, images):
        return jnp.sum(jnp.tanh(layer(images, kernel)) ** 2)

    def learn(kernel, batches):
        def step(total, images):
            d_kernel, d_images = jax.grad(loss, argnums=(0, 1))(kernel, images)
            return total + jnp.sum(d_kernel) + jnp.sum(d_images), None

        return jax.lax.scan(step, jnp.float32(0), batches)[0]

    run = jax.jit(learn).lower(kernel, batches).compile()
    jax.block_until_ready(run(kernel, batches))
    start = time.perf_counter()
    jax.block_until_ready(run(kernel, batches))
    return (time.perf_counter() - start) / batches.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()

    k_images, k_kernel = jax.random.split(jax.random.PRNGKey(0))
    batches = jax.random.normal(k_images, (50, args.batch, *IMAGE))
    kernel = 0.1 * jax.random.normal(k_kernel, (KERNEL, KERNEL, IMAGE[-1], FEATURES))
    np.testing.assert_allclose(patch_conv(batches[0], kernel), xla_conv(batches[0], kernel), rtol=1e-5, atol=1e-5)

    times = {"XLA convolution": [], "patches + product": []}
    for _ in range(args.rounds):
        times["XLA convolution"].append(timed(xla_conv, kernel, batches))
        times["patches + product"].append(timed(patch_conv, kernel, batches))
    medians = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:>18}: median {medians[name]:8.0f} us per minibatch  (rounds: {', '.join(f'{x * 1e6:.0f}' for x in t)})")
    print(f"patches + product is {medians['XLA convolution'] / medians['patches + product']:.1f}x faster")


if __name__ == "__main__":
    main()
