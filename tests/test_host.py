"""The CPU deadlock guard: set on import, never over the user's own XLA_FLAGS,
taken back by the CLI where no program can need it, and a refusal, before
compiling, of a program that does need it when XLA started without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import pytest

from conftest import run_cli, run_config
from jaxrl.host import CPU_GUARD, batched_lapack_calls, needs_cpu_guard
from jaxrl.networks import orthogonal
from jaxrl.runner import build, member_keys, population_hyperparams


def python_without_xla_flags(code: str) -> subprocess.CompletedProcess:
    """`python -c code` in a fresh process whose environment has no XLA_FLAGS."""
    clean = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean, timeout=60)


def test_import_sets_the_guard_unless_the_user_set_xla_flags():
    clean = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    check = [sys.executable, "-c", "import os, jaxrl; print(os.environ['XLA_FLAGS'])"]
    assert subprocess.run(check, capture_output=True, text=True, env=clean, timeout=60).stdout.strip() == CPU_GUARD
    own = subprocess.run(check, capture_output=True, text=True, env={**clean, "XLA_FLAGS": ""}, timeout=60)
    assert own.stdout.strip() == ""


def test_jax_started_before_import_jaxrl_gets_no_guard_it_would_ignore_and_is_refused_what_could_hang():
    # XLA reads XLA_FLAGS when its backend starts: setting the guard afterwards would only make
    # summary.json's xla_flags, and check_cpu_guard, believe a guard that is not there
    proc = python_without_xla_flags(
        "import os, jax, jax.numpy as jnp; jnp.ones(2).sum(); import jaxrl; print(os.environ.get('XLA_FLAGS')); "
        "from jaxrl.host import check_cpu_guard; "
        "check_cpu_guard({'qr': jax.jit(jax.vmap(jnp.linalg.qr)).lower(jnp.ones((4, 3, 3)))})"
    )
    assert proc.stdout.strip() == "None", proc.stderr
    # said where it matters, not at import: loading a policy needs no guard
    assert "Warning" not in proc.stderr.split("Traceback")[0], proc.stderr
    assert "ConfigError: the qr program holds batched LAPACK calls" in proc.stderr
    assert "jax computed before `import jaxrl`, which sets it: import jaxrl first" in proc.stderr


def test_the_guard_is_taken_back_only_for_one_member_on_an_env_without_lapack():
    # False: a population, or an env whose programs factorise matrices, keeps it
    relax = ("import os, jaxrl; from jaxrl.host import relax_cpu_guard as r; "
             "print(r([('gymnax', None)], 2), r([('gymnax', None), ('brax', 'mjx')], 1), os.environ['XLA_FLAGS'] != '', "
             "r([('gymnax', None), ('brax', 'spring')], 1), 'XLA_FLAGS' in os.environ)")
    proc = python_without_xla_flags(relax)
    assert proc.stdout.split() == ["False", "False", "True", "True", "False"], proc.stderr[-2000:]


def test_a_cli_run_on_an_env_without_lapack_starts_xla_without_the_guard_and_finishes(tmp_path):
    # SAC on Brax ant (spring): before `networks.orthogonal`, its twin critics'
    # batched QR hung this very command without the guard in 5 of 6 tries
    # (docs/benchmarks.md); it now finishes in about 30 s
    sac = ["env=brax", "env.name=ant", "env.backend=spring", "algo=sac", "seeds=1", "algo.num_envs=8",
           "algo.warmup_steps=256", "algo.batch_size=32", "total_timesteps=1024", "num_logs=2", "eval.episodes=2",
           "logger=none", "video.enabled=false", "compile_cache=null"]
    proc = run_cli([*sac, "run_dir=sac"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "sac" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["xla_flags"] == ""


def test_a_program_that_needs_the_guard_is_refused_without_it(tmp_path):
    # XLA_FLAGS set by the user: jaxrl adds no guard, and MJX's batched Cholesky could hang
    proc = run_cli(
        ["experiment=playground_cartpole", "algo.num_envs=4", "algo.rollout_length=8", "algo.num_minibatches=1",
         "total_timesteps=32", "run_dir=mjx"],
        cwd=tmp_path, timeout=300, XLA_FLAGS="--xla_force_host_platform_device_count=1",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "batched LAPACK calls (lapack_spotrf_ffi" in proc.stderr and CPU_GUARD in proc.stderr


def _program_texts(*overrides: str) -> str:
    """The lowered StableHLO of a population's init and vmapped update."""
    run = run_config(*overrides)
    algo, _ = build(run)
    keys, hp = member_keys(run), population_hyperparams(run)
    init = jax.jit(jax.vmap(algo.init)).lower(keys, hp)
    update = jax.jit(jax.vmap(algo.update)).lower(jax.eval_shape(jax.vmap(algo.init), keys, hp))
    return init.as_text() + update.as_text()


@pytest.mark.parametrize(
    "overrides",
    [
        ("algo=sac", "seeds=2"),
        ("algo=ppo", "seeds=2"),
        ("env=brax", "env.backend=spring", "algo=td3", "algo.num_envs=4", "seeds=2"),
        ("env=brax", "env.backend=positional", "algo.num_envs=4", "seeds=2"),
        ("env=brax", "env.backend=generalized", "algo.num_envs=4", "seeds=2"),
    ],
    ids=["gymnax-sac", "gymnax-ppo", "brax-spring-td3", "brax-positional-ppo", "brax-generalized-ppo"],
)
def test_envs_said_to_need_no_guard_hold_no_batched_lapack_call(overrides):
    run = run_config(*overrides)
    calls = batched_lapack_calls(_program_texts(*overrides))
    assert bool(calls) == needs_cpu_guard(run.env.suite, run.env.backend), calls


def test_orthogonal_init_keeps_flax_values_and_never_batches_its_qr():
    keys = jax.random.split(jax.random.key(0), 3)
    ours = jax.vmap(lambda k: orthogonal(2.0)(k, (64, 16)))
    assert (ours(keys) == jax.vmap(lambda k: nn.initializers.orthogonal(2.0)(k, (64, 16)))(keys)).all()
    assert batched_lapack_calls(jax.jit(jax.vmap(ours)).lower(jax.numpy.stack([keys, keys])).as_text()) == []
    assert batched_lapack_calls(jax.jit(jax.vmap(jax.numpy.linalg.qr)).lower(jax.numpy.ones((2, 4, 4))).as_text())
