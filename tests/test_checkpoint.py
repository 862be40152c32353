"""Checkpoints and resume, with real training processes and real files: a run
killed with SIGKILL and resumed ends bit-identical to the same run
uninterrupted (PPO with 2 seeds, SAC with its replay buffer); SIGTERM stops
resumably; damaged checkpoints, changed configs and finished runs are
handled; W&B artifacts never hold temporary files."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import jaxrl
from conftest import cli_env, leet_records, run_cli, start_cli, wait_while_running
from jaxrl.checkpoint import CHECKPOINTS, Checkpointer, Position
from jaxrl.config import CheckpointConfig, ConfigError
from jaxrl.files import FolderLock
from jaxrl.host import CPU_GUARD
from jaxrl.outputs import check_run_dir
from jaxrl.train import check_resumable, compose_config, resume_overrides, resume_target

PPO = [
    "algo=ppo", "seeds=2", "total_timesteps=61440", "num_logs=30", "algo.num_envs=8", "algo.rollout_length=64",
    "algo.hidden=[32,32]", "algo.num_minibatches=4", "algo.num_epochs=2", "eval.every=3", "eval.episodes=2",
    "video.enabled=false", "checkpoint.every=2", "logger=none",
]
SAC = [
    "algo=sac", "seeds=1", "total_timesteps=7680", "num_logs=30", "algo.num_envs=4", "algo.rollout_length=8",
    "algo.gradient_steps=4", "algo.batch_size=64", "algo.warmup_steps=256", "algo.hidden=[32,32]",
    "algo.buffer_size=4096", "eval.every=3", "eval.episodes=2", "video.enabled=false", "checkpoint.every=2",
    "logger=none",
]

def checkpoint_steps(run_dir: Path) -> list[int]:
    folder = run_dir / CHECKPOINTS
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock throughput."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("perf/")} for line in lines]


def final_state(run_dir: Path) -> dict:
    """Every leaf of the newest checkpoint's training state, as NumPy arrays."""
    step = checkpoint_steps(run_dir)[-1]
    path, checkpointer = (run_dir / CHECKPOINTS / str(step) / "state").absolute(), ocp.PyTreeCheckpointer()
    # as NumPy arrays: a state saved sharded over devices this process lacks still reads
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), checkpointer.metadata(path).item_metadata)
    tree = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def kill_and_resume(tmp_path: Path, args: list[str]) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The run uninterrupted, and the same run killed (SIGKILL) right after its
    second checkpoint and then resumed; both run side by side."""
    full = start_cli(tmp_path, *args, "run_dir=full")
    killed = start_cli(tmp_path, *args, "run_dir=killed")
    wait_while_running(lambda: len(checkpoint_steps(tmp_path / "killed")) >= 2, killed)
    killed.kill()
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "summary.json").exists()
    at_kill = checkpoint_steps(tmp_path / "killed")
    _, err = full.communicate(timeout=400)
    assert full.returncode == 0, err[-3000:]
    resumed = run_cli(["resume=killed"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming killed at step {at_kill[-1]}" in resumed.stderr
    return tmp_path / "full", tmp_path / "killed", resumed


def assert_same_run(full: Path, killed: Path) -> None:
    a, b = rows(full), rows(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b]  # no duplicated and no missing step
    assert a == b
    assert (full / "policy.msgpack").read_bytes() == (killed / "policy.msgpack").read_bytes()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert sb["status"] == "finished" and sb["sessions"] == 2
    assert sa["final"] == sb["final"] and sa["env_steps"] == sb["env_steps"]
    state_a, state_b = final_state(full), final_state(killed)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key], err_msg=key)


@pytest.mark.slow
def test_ppo_killed_and_resumed_equals_the_uninterrupted_run(tmp_path):
    full, killed, _ = kill_and_resume(tmp_path, PPO)
    assert_same_run(full, killed)
    # keep=3: older checkpoints were deleted; never a temporary folder left
    assert len(checkpoint_steps(killed)) == 3
    assert not [p for p in (killed / CHECKPOINTS).iterdir() if not p.name.isdigit()]


@pytest.mark.slow
def test_sac_killed_and_resumed_equals_the_uninterrupted_run_replay_buffer_included(tmp_path):
    full, killed, _ = kill_and_resume(tmp_path, SAC)
    assert_same_run(full, killed)
    buffers = [k for k in final_state(killed) if "buffer" in k]
    assert buffers, "the replay buffer is part of the checkpoint"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A short finished PPO run with checkpoints after every other log point."""
    root = tmp_path_factory.mktemp("finished")
    result = run_cli([*PPO, "total_timesteps=12288", "num_logs=6", "run_dir=run"], root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "already finished (12288 env steps per member); to train it longer, resume it with total_timesteps"),
        (["algo.lr=0.001"], "changes algo.lr (0.0003 -> 0.001)"),
        (["env=mountaincar"], "changes env.id (mountaincar_continuous -> mountaincar)"),
        (["algo=sac"], "cannot resume"),
        (["seeds=3"], "changes seeds (2 -> 3)"),
        (["sweep.algo.lr=[0.001]"], "this command changes sweep.algo.lr (unset -> [0.001]); a resumed run may only"),
        (["total_timesteps=abc"], "error: total_timesteps must be an integer, got 'abc'"),
        (["total_timesteps=24576", "run_dir=elsewhere"], "and run_dir=elsewhere names another; give one of them"),
    ],
    ids=["finished", "lr", "env", "algo", "members", "sweep", "bad_total", "elsewhere"],
)
def test_a_resume_that_cannot_work_is_refused_before_compiling(finished_run, args, message):
    result = run_cli([f"resume={finished_run}", *args], finished_run.parent, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "compiling" not in result.stderr, result.stderr


def test_another_algorithm_is_named_alone_not_among_the_keys_that_follow_from_it(finished_run):
    with pytest.raises(ConfigError) as refused:
        check_resumable(finished_run, compose_config(["algo=sac", "seeds=2", "total_timesteps=2e4"]))
    assert "this command changes algo.name (ppo -> sac); a resumed run may only change" in str(refused.value)


def test_an_unfinished_run_resumed_with_a_total_below_its_checkpoint_is_refused(finished_run, tmp_path):
    # killed after its last checkpoint: no summary.json; the loop would have no chunk left to train
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "summary.json").unlink()
    config = (run_dir / "config.yaml").read_text()
    result = run_cli(["resume=run", "total_timesteps=8192"], tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert ("cannot resume run with total_timesteps=8192: its newest checkpoint is at 12288 env steps per member; "
            "give total_timesteps larger than 12288") in result.stderr, result.stderr[-3000:]
    # refused: no word of how the learning rate would have changed
    assert "compiling" not in result.stderr and "warning: total_timesteps" not in result.stderr
    assert not (run_dir / "summary.json").exists() and (run_dir / "config.yaml").read_text() == config
    # stopped mid-run at 8192 (its newest checkpoint, not its final one): ending it there would skip its final
    # evaluation; only the final checkpoint may equal the total (test_a_run_killed_while_making_its_final_outputs...)
    shutil.rmtree(run_dir / CHECKPOINTS / "12288")
    result = run_cli(["resume=run", "total_timesteps=8192"], tmp_path, timeout=120)
    assert result.returncode == 2 and "give total_timesteps larger than 8192" in result.stderr, result.stderr[-3000:]
    # a total between the checkpoint and the old one: the annealed learning rate falls at the resume
    cfg = compose_config(resume_overrides(run_dir, ["total_timesteps=10240"]))
    with pytest.warns(UserWarning, match=r"from 12288 to 10240: .* at this resume \(env step 8192\) it falls from 33% to 20%"):
        check_resumable(run_dir, cfg)



# `python -m jaxrl.train ARGS`, SIGKILLed as it starts to film the final video
KILLED_WHILE_FILMING = """
import os, signal, sys
import jaxrl.train, jaxrl.video
jaxrl.video.record_episode = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
sys.argv[0] = "jaxrl.train"
jaxrl.train.main()
"""


@pytest.mark.slow
def test_a_run_killed_while_making_its_final_outputs_is_ended_by_its_resume(tmp_path):
    # the end's outputs (the video, then curves.png and sweep.csv) come after the final checkpoint and
    # before summary.json: a kill among them leaves an unfinished run, which its resume ends
    args = [*PPO, "total_timesteps=12288", "num_logs=6", "seeds=1", "sweep.algo.lr=[0.0003,0.001]",
            "video.enabled=true", "run_dir=run"]
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_FILMING, *args], cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "run"
    outputs = [run / "curves.png", run / "sweep.csv", run / "sweep.png", run / "videos" / "final.mp4"]
    assert checkpoint_steps(run) == [4096, 8192, 12288] and not (run / "summary.json").exists()
    assert not any(path.exists() for path in outputs)
    logged = rows(run)
    # what a kill in the middle of a save leaves (orbax renames a checkpoint to its step once complete);
    # orbax would delete it only on saving step 6144 again, which this run never does
    shutil.copytree(run / CHECKPOINTS / "4096", run / CHECKPOINTS / "6144.orbax-checkpoint-tmp")
    # member 1's final policy, filmed after the kill (python -m jaxrl.film --member 1): this session trains
    # nothing, so the film still shows the final policy and keeps its name
    (run / "videos").mkdir(exist_ok=True)
    (run / "videos" / "final-member1.mp4").write_bytes(b"a film of the final policy")

    resumed = run_cli(["resume=auto", "run_dir=run"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming run at step 12288" in resumed.stderr, resumed.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["sessions"] == 2 and summary["env_steps"] == 12288
    assert rows(run) == logged  # no chunk trained again
    assert summary["final"]["eval/return_mean"] == [row["eval/return_mean"] for row in logged if row["step"] == 12288]
    assert all(path.stat().st_size > 0 for path in outputs)
    assert sorted(p.name for p in (run / "videos").iterdir()) == ["final-member1.mp4", "final.mp4"]
    assert sorted(int(p.name) for p in (run / CHECKPOINTS).iterdir()) == [4096, 8192, 12288]

def test_resume_auto_starts_over_a_run_killed_before_it_recorded_its_command_line(finished_run, tmp_path):
    # what a kill leaves between config.yaml (written once compiled) and overrides.yaml (after
    # the states are made and the sinks opened): the spot loop must not stop on "holds files"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(finished_run / "config.yaml", run_dir)
    (run_dir / ".lock").write_text("pid 1 on gone\n")
    result = run_cli([*PPO, "total_timesteps=12288", "num_logs=6", "run_dir=run", "resume=auto"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert rows(run_dir) == rows(finished_run)
    assert (run_dir / "overrides.yaml").is_file()


def test_resume_of_a_folder_that_is_not_a_run_is_refused(tmp_path):
    result = run_cli([f"resume={tmp_path}"], tmp_path, timeout=120)
    assert result.returncode == 2 and "not a resumable jaxrl run folder" in result.stderr, result.stderr


def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_one(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    steps = checkpoint_steps(run_dir)
    for data in (run_dir / CHECKPOINTS / str(steps[-1]) / "state").rglob("*"):
        if data.is_file() and data.parent.name == "d":
            data.write_bytes(b"\0" * 7)
    # and a newer step folder that holds nothing (a sync tool's, or a save cut short before its first file)
    (run_dir / CHECKPOINTS / str(steps[-1] + 1)).mkdir()
    result = run_cli(["resume=run", "total_timesteps=14336"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint {Path('run') / CHECKPOINTS / str(steps[-1])} cannot be read" in result.stderr
    assert f"checkpoint {Path('run') / CHECKPOINTS / str(steps[-1] + 1)} cannot be read" in result.stderr
    # each in jaxrl's one line, not orbax's warning about the empty one, repeated at every listing of the steps
    assert "Metadata file does not exist" not in result.stderr, result.stderr[-3000:]
    # the reason names what is wrong, not the tail of a dumped tensorstore spec
    assert "(ValueError: OUT_OF_RANGE: Error " in result.stderr, result.stderr[-3000:]
    # nor is it followed by a traceback per read still in flight
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"resuming run at step {steps[-2]}" in result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["env_steps"] == 14336
    logged = [r["step"] for r in rows(run_dir) if r["member"] == 0]
    assert logged == sorted(set(logged)) and logged[-1] == 14336
    # the retrained step's checkpoint is written over the damaged one, which is kept aside
    assert "CHECKPOINT FAILED" not in result.stderr, result.stderr[-3000:]
    assert steps[-1] in checkpoint_steps(run_dir)
    assert sorted(p.name.split("-")[0] for p in (run_dir / CHECKPOINTS).glob("*.damaged-*")) == [
        f"{steps[-1]}.damaged", f"{steps[-1] + 1}.damaged"]
    from jaxrl import load_policy

    assert load_policy(run_dir, step=steps[-1])(np.zeros(2, np.float32)).shape == (1,)


def test_an_off_policy_run_trains_longer_from_its_checkpoint_with_its_replay_buffer(tmp_path):
    # the buffer is capped at the run's budget (3,072 < buffer_size): a raised total_timesteps
    # on resume must not change its shape, or no checkpoint could be read
    first = run_cli([*SAC, "total_timesteps=3072", "algo.buffer_size=1000000", "num_logs=6", "run_dir=run"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_cli(["resume=run", "total_timesteps=4096"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "cannot be read" not in resumed.stderr and "resuming run at step 3072" in resumed.stderr, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["env_steps"], summary["sessions"]) == ("finished", 4096, 2)
    buffers = [leaf for leaf in final_state(tmp_path / "run").values() if leaf.ndim >= 3 and leaf.shape[2] == 3072]
    assert buffers, "the checkpoint has no replay buffer of the first session's capacity"
    # a key that SAC has and the default algorithm (PPO) does not: named as a change, not as unknown
    refused = run_cli(["resume=run", "algo.batch_size=32"], tmp_path, timeout=120)
    assert refused.returncode == 2 and "this command changes algo.batch_size (64 -> 32)" in refused.stderr, refused.stderr
    # config.yaml now says 4,096 steps; a checkpoint of either session still loads
    from jaxrl import load_policy

    for step in checkpoint_steps(tmp_path / "run"):
        assert load_policy(tmp_path / "run", step=step)(np.zeros(2, np.float32)).shape == (1,)


def test_a_resume_that_can_read_no_checkpoint_fails_and_keeps_the_run(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    for data in (run_dir / CHECKPOINTS).rglob("*"):
        if data.is_file() and data.parent.name == "d":
            data.write_bytes(b"\0" * 7)
    metrics = (run_dir / "metrics.jsonl").read_text()
    result = run_cli(["resume=run", "total_timesteps=14336"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"none of the checkpoints in {Path('run') / CHECKPOINTS} (env steps {checkpoint_steps(run_dir)}) can be read" in result.stderr
    # one line for each unreadable checkpoint, none of orbax's tracebacks (once up to 8,000 lines)
    assert "Exception ignored" not in result.stderr and "ERROR:" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.count("cannot be read (") == len(checkpoint_steps(run_dir))
    # training from the start over it would have rewritten both
    assert (run_dir / "metrics.jsonl").read_text() == metrics
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow  # two short runs, about 40 s on 2 cores
def test_a_padded_population_checkpoints_its_own_members_and_resumes_on_one_device(tmp_path):
    two_devices = f"--xla_force_host_platform_device_count=2 {CPU_GUARD}"
    first = run_cli([*PPO, "seeds=3", "total_timesteps=12288", "num_logs=6", "run_dir=run"], tmp_path, XLA_FLAGS=two_devices)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "3 members are padded to 4 with copies of the last one, 2 on each of 2 devices" in first.stderr
    assert {leaf.shape[0] for leaf in final_state(tmp_path / "run").values() if leaf.ndim} == {3}
    resumed = run_cli(["resume=run", "total_timesteps=14336"], tmp_path)
    assert resumed.returncode == 0 and "padded" not in resumed.stderr, resumed.stderr[-3000:]
    assert "cannot be read" not in resumed.stderr and "resuming run at step 12288" in resumed.stderr, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["env_steps"], summary["seeds"]) == ("finished", 14336, [0, 1, 2])
    assert sorted(r["member"] for r in rows(tmp_path / "run") if r["step"] == 14336) == [0, 1, 2]


def test_sigterm_stops_resumably_and_resume_auto_finishes_the_run(tmp_path, monkeypatch, capsys):
    args = [*PPO, "total_timesteps=100000", "num_logs=50", "checkpoint.every=0", "runs_root=runs",
            f"compile_cache={tmp_path / 'xla'}"]
    # the run's own compile_cache, not the suite's JAX_COMPILATION_CACHE_DIR (which would win)
    own_cache = {"JAX_COMPILATION_CACHE_DIR": ""}
    proc = start_cli(tmp_path, *args, **own_cache)
    wait_while_running(lambda: any(tmp_path.glob("runs/*/metrics.jsonl")) and
               next(tmp_path.glob("runs/*/metrics.jsonl")).read_text().count("\n") >= 4, proc)
    # the training process holds its folder's lock
    assert FolderLock(next(tmp_path.glob("runs/*"))).holder() == f"pid {proc.pid} on {socket.gethostname()}"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 75, stderr[-3000:]
    assert "stopped: SIGTERM received; checkpoint at step" in stderr and "Traceback" not in stderr, stderr[-3000:]
    (run_dir,) = tmp_path.glob("runs/*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped"
    # jaxrl.watch alerts if no session resumes it (tests/test_watch.py)
    heartbeat = json.loads((run_dir / "heartbeat.json").read_text())
    assert (heartbeat["state"], heartbeat["awaits_resume"]) == ("stopped", True)
    assert summary["compile_cache"]["dir"] == str(tmp_path / "xla") and summary["compile_cache"]["hits"] == 0
    # the checkpoint is the state right after the last logged chunk (within one chunk of the signal)
    assert checkpoint_steps(run_dir) == [summary["env_steps"]]
    assert max(r["step"] for r in rows(run_dir)) == summary["env_steps"]

    # while another process holds the folder (a session on another machine of a shared disk),
    # resume=auto does not train in it too: with run_dir given it is refused at once ...
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from jaxrl.files import FolderLock; "
         "lock = FolderLock(Path(sys.argv[1])); assert lock.take() is None; print('held', flush=True); time.sleep(600)", str(run_dir)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert other.stdout.readline() == "held\n"
        refused = run_cli([*args, f"run_dir={run_dir}", "resume=auto"], tmp_path, **own_cache)
        assert refused.returncode == 2 and "compiling" not in refused.stderr, refused.stderr[-3000:]
        assert f"run_dir {run_dir} is being trained by another process (pid {other.pid} on" in refused.stderr
        # ... and without, it is passed over
        monkeypatch.chdir(tmp_path)
        assert resume_target(compose_config([*args, "resume=auto"])) == (None, None)
        assert f"{run_dir.relative_to(tmp_path)} is being trained by pid {other.pid}" in capsys.readouterr().err
        # a new run into the folder is told who trains there
        with pytest.raises(ConfigError, match=f"already holds files: pid {other.pid} on .* is training there now"):
            check_run_dir(run_dir)
    finally:
        # the kernel drops a killed process's lock: nothing stale is left
        other.kill()
        other.wait()
    assert FolderLock(run_dir).holder() is None
    with pytest.raises(ConfigError, match=f"already holds a run; give a new or empty folder, or resume={run_dir} to go on"):
        check_run_dir(run_dir)
    # looking did not sign the file: it still names the last holder
    assert (run_dir / ".lock").read_text() == f"pid {other.pid} on {socket.gethostname()}\n"

    # a kill mid-write leaves a torn last line, which the resumed run drops
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 1')
    proc = start_cli(tmp_path, *args, "resume=auto", **own_cache)
    # while the resumed session trains, the first session's summary is gone: were this
    # session killed, jaxrl.watch and resume=auto would otherwise take the run for ended
    wait_while_running(lambda: not (run_dir / "summary.json").exists(), proc)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert f"resuming {run_dir.relative_to(tmp_path)} at step {summary['env_steps']}" in stderr
    assert [p.name for p in tmp_path.glob("runs/*")] == [run_dir.name]
    steps = [r["step"] for r in rows(run_dir) if r["member"] == 0]
    assert steps == list(range(2048, 100352 + 1, 2048))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    # the resumed session loaded the training chunk the first one compiled, instead of compiling it
    assert summary["compile_cache"]["hits"] >= 1 and any((tmp_path / "xla").glob("jit_chunk-*")), summary
    # a requeued job of the finished run, its folder given: nothing to do, and not an error
    again = run_cli([*args, f"run_dir={run_dir}", "resume=auto"], tmp_path, **own_cache)
    assert again.returncode == 0 and f"{run_dir} finished already" in again.stderr, again.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    # the folder alone asks for the run in it, as resume=<folder> does (not for the default settings) ...
    bare = run_cli([f"run_dir={run_dir}", "resume=auto", "logger=none"], tmp_path, **own_cache)
    assert bare.returncode == 0 and f"{run_dir} finished already" in bare.stderr, bare.stderr[-3000:]
    # ... and a setting other than the run's is named
    other_lr = run_cli([*args, "algo.lr=1e-3", f"run_dir={run_dir}", "resume=auto"], tmp_path, **own_cache)
    assert other_lr.returncode == 2 and "this command changes algo.lr (" in other_lr.stderr, other_lr.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text()) == summary


def test_jobs_requeued_at_once_resume_different_runs(finished_run, tmp_path, monkeypatch, capsys):
    # after a mass preemption, requeued jobs of one configuration search for a run at the same
    # moment: each search takes the run it picks, so the next one picks another run
    for name, age in (("older", 100), ("newer", 0)):
        run_dir = tmp_path / "runs" / name
        shutil.copytree(finished_run, run_dir)
        (run_dir / "summary.json").write_text(json.dumps({"status": "stopped"}))
        os.utime(run_dir / "config.yaml", (time.time() - age,) * 2)
    monkeypatch.chdir(tmp_path)
    cfg = compose_config([*PPO, "num_logs=6", "runs_root=runs", "resume=auto"])
    first, first_lock = resume_target(cfg)
    second, second_lock = resume_target(cfg)
    assert (first, second) == (Path("runs/newer"), Path("runs/older"))
    assert FolderLock(first).holder() == FolderLock(second).holder() == f"pid {os.getpid()} on {socket.gethostname()}"
    assert resume_target(cfg) == (None, None)
    assert "no unfinished run of this configuration; starting a new one" in capsys.readouterr().err
    # a search that ends (its job refused, or done) frees its run for the next
    first_lock.release()
    newest, lock = resume_target(cfg)
    assert newest == first
    for held in (lock, second_lock):
        held.release()


def test_a_file_system_that_cannot_lock_is_used_unlocked_with_a_warning(tmp_path, monkeypatch):
    # as gcsfuse or s3fs answer flock; the lock is a safeguard, not a reason to refuse to train
    def no_locks(file, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr("jaxrl.files.fcntl.flock", no_locks)
    with FolderLock(tmp_path) as lock, pytest.warns(UserWarning, match=f"{tmp_path} cannot be locked .No locks available."):
        assert lock.take() is None
    assert FolderLock(tmp_path).holder() is None


def test_a_second_signal_ends_the_process_at_once(tmp_path):
    # chunks of 1.5M steps, 4 s each here at 370k steps/s on 2 idle cores: the signals arrive early in the
    # second of four, and the first must still be waiting a second later. (Chunks of 200k, 0.5 s, made
    # the test pass only by the time the stop's checkpoint and exit took, and fail now and then.)
    proc = start_cli(tmp_path, *PPO, "seeds=1", "total_timesteps=6000000", "num_logs=4", "eval.every=100", "run_dir=run")
    metrics = tmp_path / "run" / "metrics.jsonl"
    wait_while_running(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert proc.poll() is None, "the first signal waits for the chunk to end"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=5)
    assert proc.returncode == -signal.SIGTERM


def tiny_state() -> dict:
    return {"params": jnp.arange(6.0).reshape(2, 3), "key": jax.random.split(jax.random.PRNGKey(0), 2)}


def test_zero_size_arrays_are_saved_and_restored(tmp_path):
    ckpt = Checkpointer(tmp_path, CheckpointConfig(upload=False))
    state = {**tiny_state(), "act": jnp.zeros((2, 0), jnp.float32)}
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    ckpt.save(state, keys, Position(1, 4, 100, 1.0, 2.0, {}))
    states, _, _ = ckpt.restore(jax.eval_shape(lambda: state), 2)
    assert states["act"].shape == (2, 0) and states["act"].dtype == jnp.float32
    np.testing.assert_array_equal(states["params"], state["params"])
    ckpt.close()


def test_a_position_round_trips_its_hooks_state_and_one_from_a_newer_jaxrl_is_read(tmp_path):
    # a field a later version adds must not make every checkpoint of a run "unreadable" to this one
    ckpt = Checkpointer(tmp_path, CheckpointConfig(upload=False))
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    position = Position(1, 4, 100, 1.0, 2.0, {}, hooks={"AlertHook": {"nonfinite": [[1, 1.7e9]]}})
    path = ckpt.save(tiny_state(), keys, position)
    saved = path / "position" / "metadata"
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "from_a_newer_jaxrl": 1}))
    assert ckpt.restore(jax.eval_shape(tiny_state), 2)[2] == position
    assert ckpt.position() == position
    ckpt.close()


def test_a_failed_save_warns_keeps_the_previous_checkpoint_and_cleans_up(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path, CheckpointConfig(upload=False))
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    position = Position(1, 4, 100, 1.0, 2.0, {"eval/return_mean": [1.0, 2.0]})
    assert ckpt.save(tiny_state(), keys, position) == tmp_path / CHECKPOINTS / "100"

    partial = tmp_path / CHECKPOINTS / "200.orbax-checkpoint-tmp-1"

    def straggler():
        # a write of the failed save still in flight (tensorstore's threads): it makes the folder again
        # once the first removal took it away
        while partial.exists():
            time.sleep(0.001)
        (partial / "state" / "d").mkdir(parents=True)
        (partial / "state" / "d" / "data").write_bytes(b"x")

    writer = threading.Thread(target=straggler)

    def disk_full(*args, **kwargs):
        partial.mkdir()
        writer.start()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt._manager, "save", disk_full)
    monkeypatch.setattr("jaxrl.checkpoint._STRAGGLERS_S", 2.0)  # the straggler's thread runs in that time on a busy CI
    with pytest.warns(RuntimeWarning, match=r"CHECKPOINT FAILED at step 200 \(OSError: .*No space left"):
        assert ckpt.save(tiny_state(), keys, Position(2, 4, 200, 1.0, 2.0, {})) is None
    writer.join()
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS).iterdir()) == ["100"]
    shapes = jax.eval_shape(tiny_state)
    states, eval_keys, restored = ckpt.restore(shapes, 2)
    assert restored == position
    np.testing.assert_array_equal(states["params"], tiny_state()["params"])
    np.testing.assert_array_equal(eval_keys, keys)
    ckpt.close()


def test_a_disk_that_refuses_every_checkpoint_is_told_in_one_line_each_and_one_alert(tmp_path):
    # a real process whose checkpoint writes fail in tensorstore's threads (a file size limit: EFBIG, as a
    # full disk's ENOSPC): orbax's futures and coroutines, collected late, logged a traceback per array
    limit = 30000  # bytes per file: the run's own files fit, a checkpoint's data file (about 50 kB) does not

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = ["algo=ppo", "seeds=1", "total_timesteps=16384", "num_logs=4", "algo.hidden=[64,64]", "checkpoint.every=1",
            "eval.every=100", "eval.episodes=2", "logger=none", "video.enabled=false", "compile_cache=null", "run_dir=run"]
    proc = run_cli(args, tmp_path, preexec_fn=limit_file_size, JAX_ENABLE_COMPILATION_CACHE="false")
    assert proc.returncode == 0, proc.stderr[-3000:]  # training went on to the end
    failed = [line for line in proc.stderr.splitlines() if line.startswith("warning: CHECKPOINT FAILED")]
    assert [line.split()[5] for line in failed] == ["4096", "8192", "12288", "16384"], proc.stderr[-3000:]
    (alert,) = [line for line in proc.stderr.splitlines() if line.startswith("ALERT")]
    assert "checkpoint failed at step 4096" in alert and "File too large" in alert and "starts over" in alert, alert
    for flood in ("Traceback", "never retrieved", "never awaited", "ERROR"):
        assert flood not in proc.stderr, proc.stderr[-3000:]
    assert list((tmp_path / "run" / CHECKPOINTS).iterdir()) == []  # no partial folder left
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"
    assert (tmp_path / "run" / "policy.msgpack").exists()


def test_wandb_artifacts_hold_complete_checkpoints_and_never_temporary_files(tmp_path, monkeypatch):
    from jaxrl.sinks.base import FanOut, RunInfo
    from jaxrl.sinks.wandb_sink import WandbSink

    monkeypatch.chdir(tmp_path)
    sink = WandbSink(mode="offline")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sink.open(RunInfo(run_dir, "run", "ppo", "probe", {}, [{"seed": 0}], 100))
    ckpt = Checkpointer(run_dir, CheckpointConfig(), FanOut([sink]))
    folder = run_dir / CHECKPOINTS
    # what an interrupted writer or uploader leaves beside and inside a checkpoint
    folder.mkdir()
    (folder / "100.orbax-checkpoint-tmp-1764000000").mkdir()
    (folder / "100.orbax-checkpoint-tmp-1764000000" / "half").write_bytes(b"x")
    (folder / "checkpoint.tmp123").write_bytes(b"x")
    (folder / "empty").touch()
    position = Position(1, 4, 100, 1.0, 2.0, {})
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    path = ckpt.save(tiny_state(), keys, position, final=True)  # offline, only the final one is logged
    (path / "state" / "d" / "x.tempstate5").write_bytes(b"x")
    (path / "vanished").symlink_to(tmp_path / "gone")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.log_artifact(100, "checkpoint", path, ["latest", "step-100", "final"])
    assert any("vanished" in str(w.message) for w in caught), [str(w.message) for w in caught]
    sink.close({"status": "finished"})
    ckpt.close()
    (run,) = (run_dir / "wandb").glob("offline-run-*")
    artifacts = [r["artifact"] for r in leet_records(run) if r.get("type") == "artifact"]
    # one from the save itself, one from the explicit call
    assert len(artifacts) == 2
    for artifact in artifacts:
        assert artifact["type"] == "checkpoint" and "step-100" in artifact["aliases"]
        names = sorted(entry["path"] for entry in artifact["manifest"]["contents"])
        expected = sorted(
            str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and "tempstate" not in p.name
        )
        assert names == expected and "position/metadata" in names
        assert not any("tmp" in n or "tempstate" in n or n == "empty" for n in names)


def test_offline_wandb_stages_only_the_final_checkpoint(tmp_path, monkeypatch):
    # offline, wandb keeps a copy of each logged file until `wandb sync`: a copy of every
    # 5 minutes' checkpoint of a large state (8 GB for humanoid_sac) filled the disk
    from jaxrl.sinks.base import FanOut, RunInfo
    from jaxrl.sinks.wandb_sink import WandbSink

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    staged = tmp_path / "wandb-data" / "artifacts" / "staging"
    sink = WandbSink(mode="offline")
    run_dir = tmp_path / "run"
    sink.open(RunInfo(run_dir, "run", "ppo", "probe", {}, [{"seed": 0}], 300))
    ckpt = Checkpointer(run_dir, CheckpointConfig(), FanOut([sink]))
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    for step in (100, 200):
        ckpt.save(tiny_state(), keys, Position(step // 100, 4, step, 1.0, 2.0, {}))
    assert not list(staged.glob("*")), list(staged.glob("*"))  # log_artifact stages at once, on this thread
    path = ckpt.save(tiny_state(), keys, Position(3, 4, 300, 1.0, 2.0, {}), final=True)
    sink.close({"status": "finished"})
    ckpt.close()
    assert len(list(staged.glob("*"))) == len([p for p in path.rglob("*") if p.is_file()])
    (run,) = (run_dir / "wandb").glob("offline-run-*")
    (artifact,) = [r["artifact"] for r in leet_records(run) if r.get("type") == "artifact"]
    assert {"final", "step-300"} <= set(artifact["aliases"]), artifact["aliases"]


def test_load_policy_reads_a_checkpoint(finished_run):
    from jaxrl import load_policy

    steps = checkpoint_steps(finished_run)
    obs = np.array([[-0.5, 0.0], [-0.9, 0.03]], np.float32)
    # the last checkpoint holds the finished run's final policy; an earlier one another
    np.testing.assert_array_equal(load_policy(finished_run, step=steps[-1])(obs), load_policy(finished_run)(obs))
    assert not np.array_equal(load_policy(finished_run, step=steps[0])(obs), load_policy(finished_run)(obs))
    with pytest.raises(ValueError, match=rf"no checkpoint at step 5 in .*; steps: \[{steps[0]}, "):
        load_policy(finished_run, step=5)


def test_deterministic_sets_xla_flags_before_jax_starts_and_refuses_after():
    script = (
        "import os, jax; from jaxrl.host import make_deterministic; make_deterministic(); "
        "print(os.environ['XLA_FLAGS']); print(jax.config.jax_default_matmul_precision); "
        "import jax.numpy as jnp; jnp.ones(1)"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    flags, precision = out.stdout.split("\n")[:2]
    # the CPU deadlock guard stays, the GPU determinism flag joins it
    assert "--xla_cpu_enable_concurrency_optimized_scheduler=false" in flags
    assert "--xla_gpu_deterministic_ops=true" in flags and precision == "highest"

    from jaxrl.config import ConfigError
    from jaxrl.host import make_deterministic

    jnp.ones(1).block_until_ready()  # this process's backend has started
    if "--xla_gpu_deterministic_ops=true" not in os.environ.get("XLA_FLAGS", ""):
        with pytest.raises(ConfigError, match="deterministic=true must be set before jax starts"):
            make_deterministic()


def test_film_makes_a_video_after_training_from_the_run_folder(finished_run):
    steps = checkpoint_steps(finished_run)
    # the newer checkpoint first: Result.videos lists them in the order of training, not of filming
    for step in (steps[1], steps[0]):
        film = [sys.executable, "-m", "jaxrl.film", str(finished_run), "--step", str(step)]
        done = subprocess.run(film, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        mp4 = finished_run / "videos" / f"step{step}.mp4"
        assert done.stdout.startswith(f"{mp4}: return ") and mp4.stat().st_size > 1000
    videos = finished_run / "videos"
    assert jaxrl.Result.load(finished_run).videos == [videos / f"step{steps[0]}.mp4", videos / f"step{steps[1]}.mp4"]
    missing = subprocess.run([*film[:3], str(finished_run / "nowhere")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "nowhere: no such folder" in missing.stderr
