"""Ctrl-C (SIGINT) and SIGTERM on a real training process: during training,
a checkpoint, a short message (no traceback), the resumable exit status 75,
summary.json with status "stopped" and what was done, W&B runs closed as
preempting; during compilation, exit 128 + signal and no run folder."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from conftest import leet_records, leet_summary, start_cli, wait_while_running

# a budget far beyond what runs before the signal; many logged points, so the
# first metrics line comes soon after compilation
LONG = [
    "total_timesteps=2e6", "num_logs=2000", "seeds=1", "algo.num_envs=4", "algo.rollout_length=32",
    "algo.hidden=[32,32]", "algo.num_minibatches=4", "video.enabled=false", "eval.episodes=2", "eval.every=1",
]


def finish(proc: subprocess.Popen, signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_training_stops_it_resumably(tmp_path, signum):
    run_dir = tmp_path / "run"
    proc = start_cli(tmp_path, *LONG, "run_dir=run", "logger=wandb", "logger.mode=offline")
    metrics = run_dir / "metrics.jsonl"
    wait_while_running(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, proc)
    code, stderr = finish(proc, signum)
    assert code == 75, stderr[-2000:]
    name = signal.Signals(signum).name
    assert "Traceback" not in stderr and f"stopped: {name} received; checkpoint at step" in stderr, stderr[-2000:]
    assert "resumable (exit status 75)" in stderr and len(stderr.strip().splitlines()) <= 3, stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["reason"].startswith(f"{name} received")
    assert 0 < summary["env_steps"] < 2_000_000 and summary["final"]["eval/return_mean"], summary
    # the policy of the last evaluation and a checkpoint of the last chunk are kept
    assert (run_dir / "policy.msgpack").exists()
    assert (run_dir / "checkpoints" / str(summary["env_steps"])).is_dir()
    # W&B: the runs are closed and marked preempting (requeued, resumable), not running
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert runs and all(leet_summary(r)["state"] not in ("running", "") for r in runs)
    assert all(any(x.get("type") == "preempting" for x in leet_records(r)) for r in runs)



def test_a_stop_without_checkpoints_says_a_resume_starts_over(tmp_path):
    proc = start_cli(tmp_path, *LONG, "run_dir=run", "logger=none", "checkpoint.enabled=false")
    metrics = tmp_path / "run" / "metrics.jsonl"
    wait_while_running(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, proc)
    code, stderr = finish(proc, signal.SIGTERM)
    # 75 still: "try again later" is what a requeue loop should do, from the start
    assert code == 75, stderr[-2000:]
    assert ("stopped: SIGTERM received; no checkpoint (checkpoint.enabled=false), so a resume starts over"
            in stderr and "resumable" not in stderr), stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped" and "a resume starts over" in summary["reason"], summary
    assert not (tmp_path / "run" / "checkpoints").exists()

def test_a_signal_during_compilation_leaves_no_folder_and_names_none(tmp_path):
    # the session's compilation cache holds this program from the test above: compile for real
    proc = start_cli(tmp_path, *LONG, "logger=none", JAX_ENABLE_COMPILATION_CACHE="false")
    # the CLI says 'compiling ...' just before compilation starts
    line = proc.stderr.readline()
    assert line.startswith("compiling"), line
    code, stderr = finish(proc, signal.SIGINT)
    assert code == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted by SIGINT" in stderr and len(stderr.strip().splitlines()) <= 3, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "left files behind"

    # a folder made before the run (a multirun job's, which Hydra makes) holds nothing done: not named
    (tmp_path / "job").mkdir()
    proc = start_cli(tmp_path, *LONG, "logger=none", "run_dir=job", JAX_ENABLE_COMPILATION_CACHE="false")
    assert proc.stderr.readline().startswith("compiling")
    code, stderr = finish(proc, signal.SIGTERM)
    assert code == 143 and "interrupted by SIGTERM" in stderr and "what was done so far" not in stderr, stderr[-2000:]
    assert list((tmp_path / "job").iterdir()) == []
