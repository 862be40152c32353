"""jaxrl: pure-JAX reinforcement learning, jitted and vmapped over seeds and hyperparameters."""

import os


def _guard_cpu_deadlock() -> None:
    # jaxlib 0.10's concurrency-optimised CPU scheduler can deadlock vmapped
    # multi-seed training programs (see FACTS.md); XLA reads the flag when the
    # backend starts, so this must run before the first computation. A user's
    # own XLA_FLAGS are left alone.
    if "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


_guard_cpu_deadlock()
