"""The CPU deadlock guard: on for populations, taken back for the CLI's single-member runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import run_cli

from jaxrl.host import CPU_GUARD

TINY = [
    "algo.num_envs=4", "algo.rollout_length=32", "algo.hidden=[32,32]", "algo.num_minibatches=4", "eval.episodes=2",
    "total_timesteps=512", "num_logs=2", "eval.every=1", "logger=none", "video.enabled=false",
]


def python(script: str, **env: str) -> list[str]:
    """Runs `script` in a fresh interpreter (XLA_FLAGS as given, else unset); its stdout lines."""
    clean = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**clean, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_the_guard_is_taken_back_only_before_xla_starts_and_only_when_jaxrl_set_it():
    check = "import os, jaxrl; from jaxrl.host import relax_cpu_guard; {before}print(relax_cpu_guard(), os.environ.get('XLA_FLAGS'))"
    assert python(check.format(before="")) == ["True None"]
    # once XLA has read its flags, removing them would only hide what it runs with
    assert python(check.format(before="import jax.numpy as jnp; jnp.ones(1); ")) == [f"False {CPU_GUARD}"]
    # the user's own flags stay, even when they are the guard itself
    assert python(check.format(before=""), XLA_FLAGS=CPU_GUARD) == [f"False {CPU_GUARD}"]


def test_a_one_seed_cli_run_trains_without_the_guard(tmp_path):
    proc = run_cli(["seeds=1", *TINY, "run_dir=one"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["xla_flags"] == ""
