"""`distributed=true`: two real processes on 127.0.0.1, joined by
jax.distributed with gloo CPU collectives, train the same population as one
process, and only process 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_cli

TINY = ["algo.num_envs=4", "algo.rollout_length=8", "algo.hidden=[16]", "algo.num_minibatches=4", "total_timesteps=256",
        "num_logs=2", "logger=none", "video.enabled=false", "seeds=4", "eval.episodes=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_a_coordinator_distributed_is_refused_in_one_line(tmp_path):
    proc = run_cli(["distributed=true", *TINY], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "distributed=true could not find its coordinator" in proc.stderr and "JAX_COORDINATOR_ADDRESS" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # three trainers, two of them joined: about two minutes on 2 cores
def test_two_processes_train_as_one_and_only_process_0_writes(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "JAX_NUM_PROCESSES": "2"}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jaxrl.train", "distributed=true", *TINY, f"run_dir=process{i}"],
            cwd=tmp_path, env={**env, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in (0, 1)
    ]
    outputs = [p.communicate(timeout=500) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    single = run_cli([*TINY, "run_dir=single"], cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    assert not (tmp_path / "process1").exists()  # process 1 wrote no run folder
    joined = json.loads((tmp_path / "process0" / "summary.json").read_text())
    alone = json.loads((tmp_path / "single" / "summary.json").read_text())
    # the same members, split over two processes' devices: equal up to float rounding
    np.testing.assert_allclose(joined["final"]["eval/return_mean"], alone["final"]["eval/return_mean"], rtol=1e-4, atol=1e-6)
    assert joined["env_steps"] == alone["env_steps"]
