"""Shared test helpers: a probe environment with known values, config building."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

import jaxrl  # noqa: F401  (installs the CPU deadlock guard before jax starts)
from jaxrl.config import RunConfig, from_dict
from jaxrl.envs.base import EnvSpec, EnvState, TimeStep, end_of_step, initial_state
from jaxrl.train import open_sweep_keys

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# One persistent JAX compilation cache for the session, in this process and in every process the
# tests start (they inherit the environment): many tests compile the same programs (a killed run,
# its resume and the uninterrupted run it must equal; a sweep's members trained one by one), and
# each is then compiled once. A test that needs a real compilation sets
# JAX_ENABLE_COMPILATION_CACHE=false for its process.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxrl-tests-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


class ProbeEnv:
    """A probe with a known value: reward 1 at every step, every episode one
    step long, observations +1 or -1 at random.

    When the step terminates, V = 1. When it is truncated instead (a time
    limit, not an end), the value bootstraps: V = 1 + gamma * V = 1 / (1 - gamma).
    A trainer that confuses the two learns the wrong one.
    """

    name = "probe"

    def __init__(self, truncate: bool):
        self.truncate = truncate
        self.spec = EnvSpec(
            obs_shape=(1,), action_dim=1, discrete=False, action_low=(-1.0,), action_high=(1.0,), max_episode_steps=1
        )

    def reset(self, key) -> tuple[EnvState, jax.Array]:
        obs = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).reshape((1,)).astype(jnp.float32)
        return initial_state(obs), obs

    def step(self, key, state: EnvState, action) -> tuple[EnvState, TimeStep]:
        new_state, obs = self.reset(key)
        terminated = jnp.asarray(not self.truncate)
        return end_of_step(new_state.inner, state, obs, jnp.float32(1.0), terminated, ~terminated, state.inner)


def compose(*overrides: str) -> dict[str, Any]:
    """The config `python -m jaxrl.train <overrides>` would see, as plain containers."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=open_sweep_keys(list(overrides)))
    return OmegaConf.to_container(cfg, resolve=True)


def run_config(*overrides: str) -> RunConfig:
    """A validated RunConfig for the given command-line overrides."""
    return from_dict(compose(*overrides))


def cli_env() -> dict[str, str]:
    """The environment jaxrl's command line runs in here."""
    # RAY_USAGE_STATS_ENABLED: the Ray launcher's local cluster must not try to report usage from CI
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("XLA_FLAGS", None)  # the trainer must install its own guard
    return env


def run_cli(
    args: list[str], cwd: Path, timeout: float = 540, preexec_fn: Callable[[], None] | None = None, **env: str
) -> subprocess.CompletedProcess:
    """Runs `python -m jaxrl.train ARGS` in `cwd` as a user would, with `env` added to its environment
    (and `preexec_fn` run in the child before it starts Python: resource limits)."""
    return subprocess.run(
        [sys.executable, "-m", "jaxrl.train", *args], cwd=cwd, env={**cli_env(), **env}, capture_output=True, text=True,
        timeout=timeout, preexec_fn=preexec_fn,
    )


def start_cli(cwd: Path, *args: str, **env: str) -> subprocess.Popen:
    """`python -m jaxrl.train ARGS` in `cwd`, as `run_cli` runs it, without waiting."""
    return subprocess.Popen(
        [sys.executable, "-m", "jaxrl.train", *args], cwd=cwd, env={**cli_env(), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_while_running(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Polls `condition()` until true; fails if `proc` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def leet(*args: str) -> str:
    """wandb's own reader of a run's .wandb log (`wandb leet inspect ARGS`)."""
    done = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", *args], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def leet_summary(run_dir: Path) -> dict:
    """A wandb run's state, config, summary and console lines."""
    return json.loads(leet("--summary", "--json", str(run_dir)))


def leet_records(run_dir: Path) -> list[dict]:
    """Every record of a wandb run's .wandb log ("type": "history", "artifact", "preempting", ...)."""
    return [json.loads(line) for line in leet("--json", str(run_dir)).splitlines()]



# The files holding the longest single tests (about 4, 1.5 and 1.5 minutes on 2 quiet cores).
# pytest-xdist hands a worker a whole file at a time (--dist loadfile), in collection order with
# --no-loadscope-reorder: these go first, so that neither worker is left with one of them at the
# end while the other idles.
LONGEST_FIRST = ("test_humanoid.py", "test_playground.py", "test_notebooks.py")


def pytest_collection_modifyitems(items: list) -> None:
    """Moves the tests of LONGEST_FIRST's files to the front, in that order; the rest keep theirs."""
    items.sort(key=lambda item: LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else len(LONGEST_FIRST))
