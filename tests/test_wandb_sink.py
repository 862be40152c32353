"""WandbSink against real wandb in offline mode, read back with wandb's own
reader (`wandb leet inspect`)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

wandb = pytest.importorskip("wandb")

import psutil  # noqa: E402

from conftest import leet_records, leet_summary, start_cli, wait_while_running  # noqa: E402
from jaxrl.sinks.base import RunInfo  # noqa: E402
from jaxrl.sinks.wandb_sink import (  # noqa: E402
    STEP_METRIC,
    WandbSink,
    member_config,
    member_names,
    resolve_mode,
)

GROUP = "20261124-120000-ppo-mountaincar_continuous"
CONFIG = {"algo": {"name": "ppo", "lr": 3e-4, "gamma": 0.99}, "env": {"name": "mc"}, "seeds": 3}
STEPS = (0, 4096, 8192, 12288)


def run_info(run_dir: Path, members: list[dict]) -> RunInfo:
    return RunInfo(
        run_dir=run_dir,
        name=GROUP,
        algo="ppo",
        env="mountaincar_continuous",
        config=CONFIG,
        members=members,
        total_steps=STEPS[-1],
    )


def episode_return(step: int, member: int) -> float:
    return step / 1000 + 100 * member


def offline_runs(wandb_dir: Path) -> list[Path]:
    return sorted(wandb_dir.glob("offline-run-*"))


def sink_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "wandb logging is off" in str(w.message)]


@pytest.fixture
def clean_wandb_env(monkeypatch, tmp_path):
    """No credentials and no wandb mode from the machine running the tests,
    and wandb's settings re-read with that environment."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    empty_netrc = tmp_path / "netrc"
    empty_netrc.write_text("")
    monkeypatch.setenv("NETRC", str(empty_netrc))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    # wandb reads its environment once per process, when its singleton loads.
    wandb.teardown()
    yield
    wandb.teardown()


def test_one_run_per_member_grouped_with_own_config_history_and_summary(
    tmp_path, capsys, clean_wandb_env
):
    members = [
        {"seed": 0, "algo.lr": 3e-4},
        {"seed": 1, "algo.lr": 3e-4},
        {"seed": 2, "algo.lr": 1e-3},
    ]
    sink = WandbSink(tags=["test", "ppo"])  # "auto" with no API key: offline

    start = time.perf_counter()
    sink.open(run_info(tmp_path, members))
    open_s = time.perf_counter() - start

    log_s = []
    for step in STEPS:
        rows = [
            {"train/episode_return": episode_return(step, i), "loss/policy": -i, "perf/sps": 3e4}
            for i in range(len(members))
        ]
        start = time.perf_counter()
        sink.log(step, rows)
        log_s.append(time.perf_counter() - start)

    summary = {
        "algo": "ppo",
        "env": "mountaincar_continuous",
        "seeds": [0, 1, 2],
        "env_steps": STEPS[-1],
        "wall_s": 41.2,
        "compile_s": 6.3,
        "sps": 29100,
        "final": {"eval/return_mean": [93.1, 92.7, -5.0], "eval/return_std": [1.0, 2.0, 3.0]},
    }
    start = time.perf_counter()
    sink.close(summary)
    close_s = time.perf_counter() - start
    hint = capsys.readouterr().out  # before the print below, which capsys would swallow
    with capsys.disabled():
        print(
            f"\nWandbSink timings, 3 members offline: open {open_s:.2f} s,"
            f" log (all 3 members) median {statistics.median(log_s) * 1e3:.2f} ms"
            f" max {max(log_s) * 1e3:.2f} ms, close {close_s:.2f} s"
        )
    # Loose bounds: they catch a call that blocks (on a network, a lock), not noise.
    assert open_s < 30
    assert statistics.median(log_s) < 0.1

    wandb_dir = tmp_path / "wandb"
    runs = offline_runs(wandb_dir)
    assert len(runs) == 3

    assert f"wandb leet {wandb_dir}" in hint
    assert f"wandb sync {wandb_dir}" in hint
    # The upload hint names exactly this run's members.
    dry_run = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", str(wandb_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Would sync 3 run(s)" in dry_run.stdout + dry_run.stderr

    by_name = {}
    for run_dir in runs:
        got = leet_summary(run_dir)
        by_name[got["name"]] = (run_dir, got)
    names = member_names(GROUP, members)
    assert sorted(by_name) == sorted(names)

    for i, (member, name) in enumerate(zip(members, names)):
        run_dir, got = by_name[name]
        assert got["state"] == "finished"
        assert got["project"] == "jaxrl"
        assert got["tags"] == ["test", "ppo"]
        assert got["config"]["seed"] == member["seed"]
        assert got["config"]["algo"]["lr"] == member["algo.lr"]
        assert got["config"]["algo"]["gamma"] == 0.99
        final = got["summary"]
        assert final["final/eval/return_mean"] == summary["final"]["eval/return_mean"][i]
        assert final["final/eval/return_std"] == summary["final"]["eval/return_std"][i]
        for key in ("env_steps", "sps", "wall_s", "compile_s"):
            assert final[key] == summary[key]
        assert final[STEP_METRIC] == STEPS[-1]

        records = leet_records(run_dir)
        (run_record,) = [r["run"] for r in records if r["type"] == "run"]
        assert run_record["run_group"] == GROUP
        assert run_record["job_type"] == "ppo"
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        assert [h[STEP_METRIC] for h in history] == list(STEPS)
        assert [h["train/episode_return"] for h in history] == pytest.approx(
            [episode_return(s, i) for s in STEPS]
        )
        assert all("loss/policy" in h and "perf/sps" in h for h in history)
        metrics = [r["metric"] for r in records if r["type"] == "metric"]
        assert {"glob_name": "*", "step_metric": STEP_METRIC} in [
            {k: m.get(k) for k in ("glob_name", "step_metric")} for m in metrics
        ]


def test_video_and_image_land_in_the_members_run(tmp_path):
    imageio = pytest.importorskip("imageio")
    pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "episode.mp4"
    frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    imageio.mimsave(video, list(frames), fps=8, macro_block_size=1)
    image = tmp_path / "curve.png"
    imageio.imwrite(image, frames[0])

    sink = WandbSink(mode="offline", dir=tmp_path / "elsewhere")
    sink.open(run_info(tmp_path, [{"seed": 0}, {"seed": 1}]))
    sink.log(1000, [{"train/episode_return": 1.0}, {"train/episode_return": 2.0}])
    sink.log_video(1000, 1, video)
    sink.log_image(1000, 1, "charts/learning_curve", image)
    sink.close({"final": {}})

    runs = {}
    for run_dir in offline_runs(tmp_path / "elsewhere" / "wandb"):
        got = leet_summary(run_dir)
        runs[got["name"]] = run_dir, got["summary"]
    seed1, got = runs[f"{GROUP}-seed1"]
    assert got["video/episode"]["_type"] == "video-file"
    assert got["charts/learning_curve"]["_type"] == "image-file"
    media = seed1 / "files" / got["video/episode"]["path"]
    assert media.is_file() and media.read_bytes() == video.read_bytes()
    assert (seed1 / "files" / got["charts/learning_curve"]["path"]).is_file()
    seed0, got0 = runs[f"{GROUP}-seed0"]
    assert "video/episode" not in got0
    assert not list((seed0 / "files").glob("media/**/*.mp4"))


def test_resumed_sessions_continue_the_runs_history_steps(tmp_path):
    # Three sessions of one run folder, as a run resumed twice writes them offline:
    # once synced into one W&B run per member, no session's `_step` may go back
    # over an earlier one's (W&B places history rows by `_step`).
    sessions = [(0, 4096), (4096, 8192, 12288), (12288, 16384)]  # the last resumes at a replayed step
    members = [{"seed": 0}, {"seed": 1}]
    for steps in sessions:
        time.sleep(1 - time.time() % 1)  # a session's folder is named after its start, to the second
        sink = WandbSink(mode="offline")
        sink.open(run_info(tmp_path, members))
        for step in steps:
            sink.log(step, [{"train/episode_return": episode_return(step, i)} for i in range(2)])
        sink.close({"final": {}, "status": "stopped"})
    runs = offline_runs(tmp_path / "wandb")
    assert len(runs) == 6
    for run_id in {r.name.rsplit("-", 1)[1] for r in runs}:
        by_start = sorted((leet_summary(r)["start_time"], r) for r in runs if r.name.endswith(run_id))
        history = [
            [(h["_step"], h[STEP_METRIC]) for h in (r["history"]["item"] for r in leet_records(run) if r["type"] == "history")]
            for _, run in by_start
        ]
        assert history == [[(s, s) for s in steps] for steps in sessions]


@pytest.mark.parametrize(
    ("summary", "preempting", "exit_code"),
    [
        ({"status": "stopped", "reason": "SIGTERM received"}, True, 75),
        # resume=auto does not resume a run stopped on NaN/inf values: W&B must not say it will be
        ({"status": "stopped", "reason": "non-finite", "bad_state": True}, False, 1),
    ],
    ids=["preempted", "diverged"],
)
def test_a_stopped_runs_wandb_state_says_whether_it_resumes(tmp_path, summary, preempting, exit_code):
    sink = WandbSink(mode="offline")
    sink.open(run_info(tmp_path, [{"seed": 0}]))
    sink.log(4096, [{"train/episode_return": 1.0}])
    sink.close({**summary, "final": {}})
    (run,) = offline_runs(tmp_path / "wandb")
    assert any(r.get("type") == "preempting" for r in leet_records(run)) == preempting
    assert leet_summary(run)["exit_code"] == exit_code


def test_artifacts_of_a_run_folder_named_with_spaces_and_equals_signs_are_logged(tmp_path):
    # a run folder may be named after its settings; W&B refuses such characters in artifact names
    policy = tmp_path / "policy.msgpack"
    policy.write_bytes(b"params")
    sink = WandbSink(mode="offline")
    sink.open(RunInfo(tmp_path, "ppo lr=3e-4", "ppo", "mc", CONFIG, [{"seed": 0}], 100))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.log_artifact(100, "policy", policy, ["final"])
    sink.close({"final": {}})
    assert not [str(w.message) for w in caught if "W&B" in str(w.message)]
    (run,) = offline_runs(tmp_path / "wandb")
    (artifact,) = [r["artifact"] for r in leet_records(run) if r["type"] == "artifact"]
    assert artifact["name"] == "ppo_lr_3e-4-policy"
    assert [e["path"] for e in artifact["manifest"]["contents"]] == ["policy.msgpack"]


def test_the_printed_leet_and_sync_commands_work_pasted_into_a_shell(tmp_path, capsys):
    sink = WandbSink(mode="offline", dir=tmp_path / "my runs")
    sink.open(run_info(tmp_path, [{"seed": 0}]))
    sink.close({"final": {}})
    commands = [shlex.split(line.split(":", 2)[2]) for line in capsys.readouterr().out.splitlines() if "wandb " in line]
    assert commands == [["wandb", verb, str(tmp_path / "my runs" / "wandb")] for verb in ("leet", "sync")]


def _wandb_service_pids() -> list[int]:
    """wandb's service process started by this process (wandb-core), then its
    children (the system monitor), children first."""
    parent_of, name_of = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        pid = int(stat.parent.name)
        parent_of[pid], name_of[pid] = int(rest.split()[1]), name
    cores = [p for p, n in name_of.items() if n == "wandb-core" and parent_of[p] == os.getpid()]
    return [p for p in parent_of if parent_of[p] in cores] + cores


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds wandb's service via /proc")
def test_service_killed_mid_run_warns_once_and_training_goes_on(tmp_path):
    sink = WandbSink(mode="offline")
    sink.open(run_info(tmp_path, [{"seed": 0}, {"seed": 1}]))
    sink.log(0, [{"train/episode_return": 0.0}] * 2)
    pids = _wandb_service_pids()
    assert pids, "no wandb-core process found"
    try:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pids[-1], 0)  # the service is our child: reap it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            for step in (1000, 2000, 3000):
                sink.log(step, [{"train/episode_return": 1.0}] * 2)
            sink.log_video(3000, 0, tmp_path / "missing.mp4")
            sink.close({"final": {"eval/return_mean": [1.0, 2.0]}})
            elapsed = time.perf_counter() - start
        messages = sink_warnings(caught)
        assert len(messages) == 1, messages
        # Which call first notices the dead service is a race; one of them does.
        assert "could not" in messages[0]
        assert elapsed < 5
        sink.log(4000, [{"train/episode_return": 1.0}] * 2)  # still a no-op after close
    finally:
        # The dead service is wandb's process-wide singleton: reset it so that
        # later tests in this process get a fresh one.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                wandb.teardown()
            except Exception:  # the teardown of a dead service fails; it still resets
                pass
        # A killed service cannot remove its sockets from the temporary folder.
        core = pids[-1]
        tmp = Path(tempfile.gettempdir())
        for leftover in tmp.glob(f"wandb-{os.getpid()}-{core}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in tmp.glob(f"wandb_symon-{core}-*.sock"):
            leftover.unlink(missing_ok=True)


# A small PPO whose points come fast; with 400 of them, wandb's socket (about
# a hundred points) and the sink's queue of 100 calls fill while training.
HUNG = [
    "seeds=2", "algo.num_envs=4", "algo.rollout_length=32", "algo.hidden=[32,32]", "algo.num_minibatches=4",
    "video.enabled=false", "eval.episodes=2", "eval.every=100", "checkpoint.every=100",
    "run_dir=run", "logger=wandb", "logger.mode=offline", "logger.timeout_s=5",
]


@pytest.mark.parametrize(
    "points",
    [pytest.param(20, id="hangs-at-finish"), pytest.param(400, id="hangs-while-training", marks=pytest.mark.slow)],
)
def test_a_hung_wandb_service_neither_holds_up_training_nor_keeps_the_process_from_ending(tmp_path, points):
    proc = start_cli(tmp_path, *HUNG, f"num_logs={points}", f"total_timesteps={points * 128}")
    metrics = tmp_path / "run" / "metrics.jsonl"
    wait_while_running(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, proc)
    services = [p for p in psutil.Process(proc.pid).children() if p.name() == "wandb-core"]
    assert services, "no wandb-core process found"
    for service in services:
        service.suspend()  # SIGSTOP: alive, holding its sockets, answering nothing
    try:
        # communicate also waits for the service, which holds the process's stderr
        _, stderr = proc.communicate(timeout=240)
    finally:
        for service in services:
            with contextlib.suppress(psutil.Error):
                service.kill()
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["env_steps"] == points * 128
    assert metrics.read_text().count("\n") == 2 * points  # a line per member and point
    assert (tmp_path / "run" / "checkpoints" / str(points * 128)).is_dir()
    assert "stopped it (pid" in stderr and "metrics.jsonl, summary.json and the checkpoints are complete" in stderr
    if points == 400:
        assert "wandb logging is off for the rest of this run: wandb's service took no call" in stderr
    assert not any(service.is_running() for service in services)


DEAD_SERVICE = """
import sys
from pathlib import Path
import psutil
from jaxrl.sinks.base import RunInfo
from jaxrl.sinks.wandb_sink import WandbSink

root = Path(sys.argv[1])
for session in ("dead", "next"):  # as a multirun's jobs: one process, one sink after the other
    sink = WandbSink(mode="offline")
    sink.open(RunInfo(root / session, "g", "ppo", "mc", {}, [{"seed": 0}], 300))
    sink.log(100, [{"x": 1.0}])
    if session == "dead":
        for service in psutil.Process().children():
            if service.name() == "wandb-core":
                service.kill()
                service.wait()
    sink.log(200, [{"x": 2.0}])
    sink.close({"status": "finished", "final": {}})
"""


def test_a_dead_service_leaves_no_traceback_at_exit_and_the_next_run_gets_a_new_one(tmp_path):
    done = subprocess.run([sys.executable, "-c", DEAD_SERVICE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.count("wandb logging is off") == 1, done.stderr[-3000:]
    (run,) = offline_runs(tmp_path / "next" / "wandb")
    assert [r["history"]["item"]["x"] for r in leet_records(run) if r["type"] == "history"] == [1, 2]


def test_wandb_that_cannot_start_warns_once_and_later_calls_do_nothing(
    tmp_path, clean_wandb_env
):
    # Online with no API key anywhere: wandb.init refuses to start.
    sink = WandbSink(mode="online")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.open(run_info(tmp_path, [{"seed": 0}, {"seed": 1}, {"seed": 2}]))
        sink.log(0, [{"x": 1.0}] * 3)
        sink.log_image(0, 0, "charts/curve", tmp_path / "missing.png")
        sink.close({"final": {}})
    messages = sink_warnings(caught)
    assert len(messages) == 1, messages
    assert "could not start the wandb runs" in messages[0]
    assert "API key" in messages[0]
    assert not (tmp_path / "wandb").exists()


def test_wandb_folder_that_cannot_be_made_warns_once(tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    sink = WandbSink(mode="offline", dir=not_a_folder / "runs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.open(run_info(tmp_path, [{"seed": 0}]))
        sink.log(0, [{"x": 1.0}])
        sink.close({"final": {}})
    messages = sink_warnings(caught)
    assert len(messages) == 1, messages
    assert "could not start the wandb runs" in messages[0]
    assert not_a_folder.is_file()


def test_disabled_mode_never_touches_wandb(tmp_path):
    sink = WandbSink(mode="disabled")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.open(run_info(tmp_path, [{"seed": 0}]))
        sink.log(0, [{"x": 1.0}])
        sink.log_video(0, 0, tmp_path / "missing.mp4")
        sink.close({"final": {}})
    assert not sink_warnings(caught)
    assert not (tmp_path / "wandb").exists()


def test_auto_mode_is_online_only_with_credentials(tmp_path, monkeypatch, clean_wandb_env):
    assert resolve_mode("auto") == "offline"

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode("auto") == "online"
    monkeypatch.delenv("WANDB_API_KEY")

    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {'n' * 40}\n")
    assert resolve_mode("auto") == "online"

    for explicit in ("online", "offline", "disabled"):
        assert resolve_mode(explicit) == explicit
    with pytest.raises(ValueError, match="logger.mode"):
        WandbSink(mode="cloud")


@pytest.mark.parametrize("wandb_mode", ["offline", "disabled"])
def test_auto_mode_follows_wandb_mode_setting(monkeypatch, clean_wandb_env, wandb_mode):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_MODE", wandb_mode)
    wandb.teardown()  # re-read the environment
    assert resolve_mode("auto") == wandb_mode


def test_member_names_and_config():
    assert member_names("grp", [{"seed": 3}]) == ["grp-seed3"]
    assert member_names("grp", [{"seed": 0, "algo.lr": 0.0003}]) == ["grp-seed0-algo.lr=0.0003"]
    # choice(0.9,0.99) drawn 0.99 twice, with seeds=2: no two W&B runs of the group share a name
    drawn = [{"seed": s, "algo.gamma": g} for g in (0.99, 0.9, 0.99) for s in (0, 1)]
    assert member_names("grp", drawn) == [
        "grp-seed0-algo.gamma=0.99-member0", "grp-seed1-algo.gamma=0.99-member1",
        "grp-seed0-algo.gamma=0.9", "grp-seed1-algo.gamma=0.9",
        "grp-seed0-algo.gamma=0.99-member4", "grp-seed1-algo.gamma=0.99-member5",
    ]
    merged = member_config(CONFIG, {"seed": 0, "algo.lr": 1e-3, "new.deep.key": 1})
    assert merged["seed"] == 0
    assert merged["algo"] == {"name": "ppo", "lr": 1e-3, "gamma": 0.99}
    assert merged["new"] == {"deep": {"key": 1}}
    assert CONFIG["algo"]["lr"] == 3e-4
