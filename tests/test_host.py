"""The CPU deadlock guard: on for every run jaxrl starts, never over the user's own XLA_FLAGS."""

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


def test_import_sets_the_guard_unless_the_user_set_xla_flags():
    clean = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    check = [sys.executable, "-c", "import os, jaxrl; print(os.environ['XLA_FLAGS'])"]
    assert subprocess.run(check, capture_output=True, text=True, env=clean, timeout=60).stdout.strip() == CPU_GUARD
    own = subprocess.run(check, capture_output=True, text=True, env={**clean, "XLA_FLAGS": ""}, timeout=60)
    assert own.stdout.strip() == ""


def test_a_one_seed_cli_run_keeps_the_guard(tmp_path):
    # one SAC member on Brax humanoid deadlocked without it (jaxrl/host.py)
    proc = run_cli(["seeds=1", *TINY, "run_dir=one"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["xla_flags"] == CPU_GUARD
