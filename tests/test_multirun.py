"""Hydra multirun (-m) for shape-changing settings: one run folder per job and
a summary of them all, locally and through the submitit and Ray launchers; a
stopped multirun goes on with resume=auto."""

from __future__ import annotations

import json
import shutil
import signal

import psutil
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import leet_records, run_cli, start_cli, wait_while_running
from jaxrl.multirun import MultirunSummary, collect

TINY = ["algo.rollout_length=8", "algo.hidden=[16]", "algo.num_minibatches=4", "total_timesteps=256", "num_logs=2",
        "logger=none", "video.enabled=false", "seeds=1", "eval.episodes=1"]


def test_collect_names_what_differs_between_jobs(tmp_path):
    # resume: what a first session of resume=auto writes, and what a resumed one does
    for job, (envs, resume) in enumerate(((4, "auto"), (8, None))):
        (tmp_path / str(job)).mkdir()
        config = {"algo": {"num_envs": envs, "lr": 1e-3}, "run_dir": None, "resume": resume}
        (tmp_path / str(job) / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "0" / "summary.json").write_text(json.dumps({"status": "finished"}))
    (tmp_path / ".submitit").mkdir()
    jobs = collect(tmp_path)["jobs"]
    assert [(j["job"], j["settings"], j["summary"]) for j in jobs] == [
        (0, {"algo.num_envs": 4}, {"status": "finished"}),
        (1, {"algo.num_envs": 8}, None),
    ]


def test_overrides_before_the_multirun_flag_are_taken(tmp_path):
    # `make train ARGS=...` and shell habits put settings before -m; Hydra's parser takes them only after it
    proc = run_cli([*TINY, "-m", "algo.num_envs=4"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "runs").glob("multirun-*")
    config = yaml.safe_load((sweep / "0" / "config.yaml").read_text())
    assert (config["algo"]["num_envs"], config["algo"]["rollout_length"], config["total_timesteps"]) == (4, 8, 256)
    assert "job 0: finished" in proc.stdout


def test_a_multirun_jobs_wandb_names_say_which_multirun(tmp_path):
    # every multirun has a job "0": named by its folder alone, the jobs of all multiruns
    # of a W&B project would share one group, and their checkpoints one artifact
    tiny = [a for a in TINY if a != "logger=none"]
    proc = run_cli(["-m", *tiny, "hydra.sweep.dir=grid-a", "algo.num_envs=4", "logger.mode=offline"], cwd=tmp_path,
                   timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wandb_run,) = (tmp_path / "grid-a" / "0" / "wandb").glob("offline-run-*")
    records = leet_records(wandb_run)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert (run["run_group"], run["display_name"]) == ("grid-a-0", "grid-a-0-seed0")
    assert {r["artifact"]["name"] for r in records if r["type"] == "artifact"} == {"grid-a-0-checkpoint", "grid-a-0-policy"}


def test_a_multirun_over_algorithms_takes_keys_the_default_algorithm_lacks(tmp_path):
    # Hydra composes the multirun's own config with no swept group's option: PPO, which has no normalize_advantage
    a2c = ["algo=choice(a2c)", "algo.normalize_advantage=true", "algo.num_envs=4", *TINY[:2], *TINY[3:]]
    proc = run_cli(["-m", *a2c], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "runs").glob("multirun-*")
    config = yaml.safe_load((sweep / "0" / "config.yaml").read_text())
    assert (config["algo"]["name"], config["algo"]["normalize_advantage"]) == ("a2c", True)


def test_a_job_that_diverges_leaves_the_others_to_train(tmp_path):
    # job 0's parameters become NaN in its first chunk: it stops, unsaved, and job 1 still trains
    proc = run_cli(["-m", *TINY, "algo.num_envs=4", "alerts.test_nan=[0,0],null"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "runs").glob("multirun-*")
    summary = json.loads((sweep / "summary.json").read_text())
    assert [(j["summary"]["status"], j["summary"].get("bad_state")) for j in summary["jobs"]] == [
        ("stopped", True), ("finished", None),
    ]
    assert "the other jobs go on" in proc.stderr and "job 1: finished" in proc.stdout


def test_collect_leaves_out_keys_that_only_some_jobs_have(tmp_path):
    # -m algo=ppo,a2c: clip_eps is PPO's alone; job 2 wrote no config (it failed before compiling)
    algos = [{"name": "ppo", "lr": 3e-4, "clip_eps": 0.2}, {"name": "a2c", "lr": 7e-4, "normalize_advantage": False}]
    for job, algo in enumerate(algos):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "config.yaml").write_text(yaml.safe_dump({"algo": algo, "seeds": 1}))
    (tmp_path / "2").mkdir()
    assert [j["settings"] for j in collect(tmp_path)["jobs"]] == [
        {"algo.lr": 3e-4, "algo.name": "ppo"}, {"algo.lr": 7e-4, "algo.name": "a2c"}, {"algo.lr": None, "algo.name": None},
    ]


@pytest.mark.slow  # two jobs, each its own process (with Ray, a local cluster too): about 20 s each on 2 cores
@pytest.mark.parametrize("launcher", ["submitit_local", "ray"])
def test_a_launcher_multirun_makes_a_run_folder_per_job_and_a_summary(tmp_path, launcher):
    # ray: a local Ray cluster started by the launcher and stopped when the multirun ends
    proc = run_cli(["-m", f"hydra/launcher={launcher}", "algo.num_envs=4,8", *TINY], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "runs").glob("multirun-*")
    summary = json.loads((sweep / "summary.json").read_text())
    assert [(j["job"], j["settings"], j["summary"]["status"]) for j in summary["jobs"]] == [
        (0, {"algo.num_envs": 4}, "finished"),
        (1, {"algo.num_envs": 8}, "finished"),
    ]
    for job in (0, 1):
        assert (sweep / str(job) / "metrics.jsonl").exists() and (sweep / str(job) / "policy.msgpack").exists()
    assert "job 1: finished" in proc.stdout


@pytest.mark.slow  # two short multiruns in one process each: about 40 s on 2 cores
def test_a_stopped_multirun_goes_on_with_resume_auto_and_trains_no_finished_job_again(tmp_path):
    # job 0 is short and finishes; job 1 is long enough to be stopped while it trains
    args = ["-m", "hydra.sweep.dir=sweep", "total_timesteps=1024,300000", "algo.num_envs=4", *TINY[:3],
            "num_logs=100", *TINY[5:], "checkpoint.every=0"]
    proc = start_cli(tmp_path, *args, "resume=auto")  # the README's form: the same command every time
    metrics = tmp_path / "sweep" / "1" / "metrics.jsonl"
    wait_while_running(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 75, stderr[-3000:]
    stopped = json.loads((tmp_path / "sweep" / "1" / "summary.json").read_text())
    # one-member gymnax jobs: the basic launcher's process trains without the CPU guard
    assert stopped["status"] == "stopped" and stopped["xla_flags"] == ""

    resumed = run_cli([*args, "resume=auto"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "sweep/0 finished already" in resumed.stderr
    assert f"sweep/1 at step {stopped['env_steps']}" in resumed.stderr
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [(j["summary"]["status"], j["summary"]["env_steps"] >= total) for j, total in zip(summary["jobs"], (1024, 3e5))] == [
        ("finished", True), ("finished", True),
    ]
    # job 0's config.yaml is its first session's (resume: auto), job 1's its resumed one's: not a setting
    assert [j["settings"] for j in summary["jobs"]] == [{"total_timesteps": 1024}, {"total_timesteps": 300000}]

    # a job that stopped on NaN parameters is left to a person, and the others go on
    job0 = tmp_path / "sweep" / "0" / "summary.json"
    job0.write_text(json.dumps({**json.loads(job0.read_text()), "status": "stopped", "bad_state": True, "reason": "non-finite"}))
    again = run_cli([*args, "resume=auto"], tmp_path, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sweep/0 stopped on a bad state (non-finite)" in again.stderr and "sweep/1 finished already" in again.stderr

    # a job that crashes leaves the others to go on and the summary written, and the multirun
    # ends failed: job 0, as if killed before its first checkpoint, starts again in its folder,
    # where a directory is in the way of its policy file
    stopped0 = {k: v for k, v in json.loads(job0.read_text()).items() if k != "bad_state"}
    job0.write_text(json.dumps({**stopped0, "status": "stopped", "reason": "SIGTERM received"}))
    shutil.rmtree(tmp_path / "sweep" / "0" / "checkpoints")
    (tmp_path / "sweep" / "0" / "policy.msgpack").unlink()
    (tmp_path / "sweep" / "0" / "policy.msgpack").mkdir()
    crashed = run_cli([*args, "resume=auto"], tmp_path, timeout=120)
    assert crashed.returncode == 1, crashed.stderr[-3000:]
    assert f"error: job {tmp_path / 'sweep' / '0'} failed: " in crashed.stderr, crashed.stderr[-3000:]
    assert "sweep/1 finished already" in crashed.stderr and "job 1: finished" in crashed.stdout
    assert crashed.stderr.rstrip().endswith(f"error: 1 job(s) failed: {tmp_path / 'sweep' / '0'}")
    assert len(json.loads((tmp_path / "sweep" / "summary.json").read_text())["jobs"]) == 2

    # the same sweep folder with other settings is refused, not taken for the finished jobs
    wider = [a.replace("algo.hidden=[16]", "algo.hidden=[32]") for a in args]
    changed = run_cli([*wider, "resume=auto"], tmp_path, timeout=120)
    assert changed.returncode == 2 and "this command changes algo.hidden" in changed.stderr, changed.stderr[-3000:]


@pytest.mark.slow  # two submitit_local jobs stopped while they train, then resumed: about a minute on 2 cores
def test_a_sigterm_to_a_submitit_local_multirun_stops_its_jobs_resumably_and_resume_auto_finishes_them(tmp_path):
    args = ["-m", "hydra/launcher=submitit_local", "hydra.sweep.dir=sweep", "algo.num_envs=4,8", *TINY[:2],
            "total_timesteps=400000", "num_logs=100", *TINY[5:], "checkpoint.every=0"]
    proc = start_cli(tmp_path, *args, "resume=auto")
    rows = [tmp_path / "sweep" / str(job) / "metrics.jsonl" for job in (0, 1)]
    wait_while_running(lambda: all(m.exists() and m.read_text().count("\n") >= 2 for m in rows), proc)
    jobs = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)  # as a service manager or `kill` stops it: the jobs' processes get nothing
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75 and "Traceback" not in stderr, stderr[-3000:]
    assert "stopped: 2 job(s) stopped resumably; go on with the same command, resume=auto" in stderr, stderr[-3000:]
    assert not [p for p in jobs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # none left training
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [(j["summary"]["status"], j["summary"]["signal"]) for j in summary["jobs"]] == [("stopped", "SIGTERM")] * 2
    steps = [j["summary"]["env_steps"] for j in summary["jobs"]]
    assert all(0 < s < 400000 for s in steps) and all((tmp_path / "sweep" / str(j) / "checkpoints").is_dir() for j in (0, 1))

    resumed = run_cli([*args, "resume=auto"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [(j["summary"]["status"], j["summary"]["sessions"]) for j in summary["jobs"]] == [("finished", 2)] * 2


def test_the_multirun_summary_prints_nan_for_a_job_whose_final_return_is_nan(tmp_path, capsys):
    # summary.json stores NaN as null: a job whose member diverged after an evaluation has [null, 1.5]
    for job, returns in enumerate(([None, 1.5], [2.0, 3.0])):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "config.yaml").write_text(yaml.safe_dump({"algo": {"lr": 1e-4 * (job + 1)}}))
        summary = {"status": "stopped" if job == 0 else "finished", "final": {"eval/return_mean": returns}}
        (tmp_path / str(job) / "summary.json").write_text(json.dumps(summary))
    basic = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    MultirunSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "launcher": basic}}))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "  job 0: stopped, eval/return_mean nan, algo.lr=0.0001",
        "  job 1: finished, eval/return_mean 2.50, algo.lr=0.0002",
    ]


def test_a_refused_job_is_named_by_its_index_and_the_settings_that_set_it_apart():
    from jaxrl.train import _job_label

    jobs = [["algo.lr=1e-3", "seeds=1"], ["algo.lr=1e-2", "seeds=1"], ["algo.lr=1e-2", "seeds=1"]]
    assert [_job_label(i, jobs) for i in range(3)] == ["job 0 (algo.lr=1e-3)", "job 1 (algo.lr=1e-2)", "job 2 (algo.lr=1e-2)"]
    assert [_job_label(i, [["seeds=1"]] * 2) for i in range(2)] == ["job 0", "job 1"]  # the same job twice
    assert _job_label(0, [["seeds=1"]]) == ""  # a lone job's refusal is the run's
