"""`distributed=true`: two real processes on 127.0.0.1, joined by
jax.distributed with gloo CPU collectives, train the same population as one
process, only process 0 writes, a preempted pair resumes together, and a
folder that process 0 refuses stops the pair at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import run_cli, wait_while_running
from jaxrl.errors import ConfigError
from jaxrl.files import FolderLock
from jaxrl.train import OVERRIDES_FILE, compose_config

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


def start_processes(tmp_path, *args_of, command: tuple[str, ...] = ("-m", "jaxrl.train", "distributed=true")) -> list[subprocess.Popen]:
    """One `python COMMAND ARGS` per argument list (the CLI with distributed=true by default), joined on a fresh port."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}",
           "JAX_NUM_PROCESSES": str(len(args_of))}
    env.pop("XLA_FLAGS", None)
    return [
        subprocess.Popen(
            [sys.executable, *command, *args],
            cwd=tmp_path, env={**env, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i, args in enumerate(args_of)
    ]


@pytest.mark.slow  # three trainers, two of them joined: about two minutes on 2 cores
def test_two_processes_train_as_one_and_only_process_0_writes(tmp_path):
    procs = start_processes(tmp_path, [*TINY, "run_dir=process0"], [*TINY, "run_dir=process1"])
    outputs = [p.communicate(timeout=500) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    single = run_cli([*TINY, "run_dir=single"], cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    assert not (tmp_path / "process1").exists()  # process 1 wrote no run folder
    assert "compiling" in outputs[0][1] and "compiling" not in outputs[1][1], outputs[1][1][-2000:]  # nor spoke
    joined = json.loads((tmp_path / "process0" / "summary.json").read_text())
    alone = json.loads((tmp_path / "single" / "summary.json").read_text())
    # the same members, split over two processes' devices: equal up to float rounding
    np.testing.assert_allclose(joined["final"]["eval/return_mean"], alone["final"]["eval/return_mean"], rtol=1e-4, atol=1e-6)
    assert joined["env_steps"] == alone["env_steps"]


@pytest.mark.slow  # two joined trainers, stopped and resumed, then two uninterrupted: about a minute on 2 cores
def test_a_process_stopped_by_sigterm_stops_both_after_the_same_chunk_and_they_resume_together(tmp_path):
    # one member, padded to one per process: each program still needs both processes
    longer = [*TINY[:4], "total_timesteps=16000", "num_logs=100", *TINY[6:8], "seeds=1", *TINY[9:], "checkpoint.every=0"]
    procs = start_processes(tmp_path, [*longer, "run_dir=run"], [*longer, "run_dir=run"])
    metrics = tmp_path / "run" / "metrics.jsonl"
    wait_while_running(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, procs[0])
    procs[1].send_signal(signal.SIGTERM)  # the process that writes nothing: process 0 learns of it at the next chunk
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [75, 75], [err[-2000:] for _, err in outputs]
    stopped = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert stopped["status"] == "stopped", outputs[0][1][-3000:]
    assert stopped["reason"] == f"another process received SIGTERM; checkpoint at step {stopped['env_steps']}"
    # a preempted machine of the run is the run's preemption: jaxrl.watch alerts if no session resumes it
    assert stopped["signal"] == "SIGTERM"
    heartbeat = json.loads((tmp_path / "run" / "heartbeat.json").read_text())
    assert (heartbeat["state"], heartbeat["awaits_resume"]) == ("stopped", True)

    procs = start_processes(tmp_path, ["resume=run"], ["resume=run"])
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert f"resuming run at step {stopped['env_steps']}" in outputs[0][1]
    procs = start_processes(tmp_path, [*longer, "run_dir=full"], [*longer, "run_dir=full"])
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    resumed, full = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("run", "full"))
    assert (resumed["status"], resumed["env_steps"], resumed["sessions"]) == ("finished", full["env_steps"], 2)
    # exactly where it stopped: every logged row equals the uninterrupted pair's
    rows = [[{k: v for k, v in json.loads(line).items() if not k.startswith("perf/")}
             for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("run", "full")]
    assert rows[0] == rows[1]


@pytest.mark.slow  # two joined trainers, one killed: about 40 s on 2 cores
def test_a_process_killed_with_sigkill_leaves_the_other_to_fail_at_once_with_status_1(tmp_path):
    longer = [*TINY[:4], "total_timesteps=16000", "num_logs=100", *TINY[6:8], "seeds=1", *TINY[9:]]
    procs = start_processes(tmp_path, [*longer, "run_dir=run"], [*longer, "run_dir=run"])
    metrics = tmp_path / "run" / "metrics.jsonl"
    wait_while_running(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, procs[0])
    procs[1].kill()  # a machine lost: nothing of process 1 runs on
    # process 0's next collective fails at once (gloo: the peer closed the connection); it used to
    # wait at jax.distributed's shutdown barrier for the dead process, until the coordination
    # service aborted it (status 134) after its 100 s heartbeat timeout
    statuses, errs = exit_statuses(procs, 60)
    assert statuses == [1, -signal.SIGKILL], errs[0][-3000:]
    assert last_error(errs[0]).startswith("error: training failed: "), errs[0][-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["env_steps"] > 0, summary


def exit_statuses(procs: list[subprocess.Popen], timeout: float) -> tuple[list[int], list[str]]:
    """The processes' exit statuses and stderr, killing them all if one is not done in `timeout` s."""
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [p.returncode for p in procs], [err for _, err in outputs]


def test_a_folder_that_process_0_refuses_stops_every_process_with_status_2(tmp_path):
    # only process 0 has the run folder; alone, it would end and leave process 1 to fail in its
    # first collective when gloo's 30 s timeout expires, with exit status 1
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("someone else's")
    statuses, errs = exit_statuses(start_processes(tmp_path, [*TINY, "run_dir=taken"], [*TINY, "run_dir=taken"]), 120)
    assert statuses == [2, 2], [err[-2000:] for err in errs]
    # every process says why, in the same one line
    assert [last_error(err) for err in errs] == [last_error(errs[0])] * 2 and "run_dir taken already holds files" in errs[0]

    # a resume into a run that another process trains (here: holds its lock)
    overrides = ["distributed=true", *TINY, "run_dir=run"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / OVERRIDES_FILE).write_text(yaml.safe_dump(overrides))
    config = OmegaConf.to_container(compose_config(overrides), resolve=True)
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    with FolderLock(tmp_path / "run") as lock:
        assert lock.take() is None
        statuses, errs = exit_statuses(start_processes(tmp_path, ["resume=run"], ["resume=run"]), 120)
    assert statuses == [2, 2], [err[-2000:] for err in errs]
    assert [last_error(err) for err in errs] == [last_error(errs[0])] * 2
    assert f"run_dir run is being trained by another process (pid {os.getpid()} on" in errs[0]
    assert "compiling" not in errs[0] + errs[1]

    # an alert channel that only process 0 opens, refused after the processes joined
    args = [*TINY, "run_dir=alerts", "alerts.channels=[env:JAXRL_NOPE_URL]"]
    statuses, errs = exit_statuses(start_processes(tmp_path, args, args), 120)
    assert statuses == [2, 2], [err[-2000:] for err in errs]
    assert [last_error(err) for err in errs] == ["error: alerts channel env:JAXRL_NOPE_URL: environment variable "
                                                 "JAXRL_NOPE_URL is not set"] * 2


def last_error(stderr: str) -> str:
    """The last line of a process's stderr: the one line that says why it ended."""
    return stderr.strip().splitlines()[-1]


@pytest.mark.slow  # two joined processes stopped while compiling, then one process: about a minute on 2 cores
def test_a_sigterm_while_compiling_stops_every_process_resumably_and_one_process_resumes_the_run(tmp_path):
    args = [*TINY, "algo.hidden=[17]", "run_dir=run"]  # a program no other test compiled, so no cache hides the compile
    procs = start_processes(tmp_path, args, args)
    head = []
    # process 0 alone says it compiles (the others print nothing of their own); it says so as it starts
    while "compiling" not in (line := procs[0].stderr.readline()):
        assert line, f"process 0 exited before compiling: {''.join(head)[-2000:]}"
        head.append(line)
    procs[0].send_signal(signal.SIGTERM)
    statuses, errs = exit_statuses(procs, 120)
    assert statuses == [75, 75], [err[-2000:] for err in errs]
    assert "stopped: SIGTERM received while compiling" in errs[0]
    assert "stopped: another process received SIGTERM while compiling" in errs[1]
    stopped = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (stopped["status"], stopped["reason"], stopped["signal"], stopped["env_steps"]) == (
        "stopped", "SIGTERM received while compiling", "SIGTERM", 0)

    # a run of two processes goes on in one (README: a run resumes on any number of devices)
    alone = run_cli(["resume=run", "distributed=false"], cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-2000:]
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (resumed["status"], resumed["env_steps"], len(resumed["final"]["eval/return_mean"])) == ("finished", 256, 4)


_RUN_FROM_PYTHON = """
import json, sys
import jaxrl
result = jaxrl.run(overrides=sys.argv[1:])
print("result:", json.dumps({"run_dir": str(result.run_dir), "final": result.summary["final"]}))
"""


@pytest.mark.slow  # two joined processes: about 40 s on 2 cores
def test_jaxrl_run_returns_process_0s_run_on_every_process_and_only_process_0_prints(tmp_path):
    args = ["distributed=true", *TINY[:-2], "seeds=1", "sweep.algo.lr=[1e-3,3e-3]"]
    procs = start_processes(tmp_path, args, args, command=("-c", _RUN_FROM_PYTHON))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    results = [json.loads(out.split("result: ", 1)[1]) for out, _ in outputs]
    (folder,) = (tmp_path / "runs").iterdir()
    assert results[0] == results[1] and results[0]["run_dir"] == str(folder)
    assert (folder / "sweep.csv").exists()
    # process 1 trains the same loop and neither prints nor plots what process 0 does
    assert "sweep leaderboard" in outputs[0][0] and "sweep leaderboard" not in outputs[1][0] + outputs[1][1]


def test_a_multirun_with_distributed_is_refused_before_anything_starts(tmp_path):
    proc = run_cli(["-m", "distributed=true", *TINY, "seed=0,1"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: distributed=true does not work with -m: start one distributed run per job instead")
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "runs").exists()


def test_distributed_after_jax_has_started_is_refused_in_one_line(tmp_path, monkeypatch):
    import jax

    import jaxrl

    monkeypatch.chdir(tmp_path)
    jax.devices()  # the backend is up, as in a notebook that ran JAX first
    with pytest.raises(ConfigError, match="distributed=true must join the other processes before JAX starts"):
        jaxrl.run(overrides=["distributed=true", *TINY])
    assert not (tmp_path / "runs").exists()


def test_a_process_id_out_of_range_is_named_not_taken_for_a_missing_coordinator(tmp_path, monkeypatch):
    import jaxrl

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "2")
    with pytest.raises(ConfigError, match=r"JAX_PROCESS_ID=2 must be in 0\.\.1 \(JAX_NUM_PROCESSES=2\)"):
        jaxrl.run(overrides=["distributed=true", *TINY])


def test_after_joining_a_sigterm_still_reaches_python(tmp_path):
    # jax's preemption service would take SIGTERM over until the runner installs its own handler
    script = """
import os, signal, sys, time
from jaxrl.distributed import initialize
caught = []
signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
initialize()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(1)
print("caught" if caught else "lost", flush=True)
"""
    env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "JAX_NUM_PROCESSES": "1",
           "JAX_PROCESS_ID": "0"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip() == "caught", (proc.returncode, proc.stderr[-2000:])


SLURM = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}


@pytest.mark.parametrize(("tasks", "visible"), [("2", None), ("4", [0])])
def test_on_slurm_one_task_per_node_uses_every_gpu_of_its_node(monkeypatch, tasks, visible):
    """`visible`: the devices jax restricts the task to (None: all of its node's)."""
    import jax
    from jax._src import clusters, xla_bridge

    from jaxrl import distributed

    given = {}
    monkeypatch.setattr(distributed.os, "environ", {**SLURM, "SLURM_NTASKS": tasks, "SLURM_STEP_NUM_NODES": "2"})
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    monkeypatch.setattr(jax.config, "update", lambda name, value: None)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: given.update(kwargs))
    distributed.initialize()
    # what jax's own SLURM detection makes of them (a None left for it to fill in)
    _, processes, _, ids = clusters.ClusterEnv.auto_detect_unset_distributed_params(
        None, given.get("num_processes"), given.get("process_id"), given.get("local_device_ids"), None, 10)
    assert processes == int(tasks)
    assert (ids or None) == visible
