"""The trainer end to end: the command line, run folders, learning, vmap, sweeps, load_policy."""

from __future__ import annotations

import json
import math
import resource
import signal
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from conftest import compose, leet_summary, run_cli, run_config
from jaxrl import load_policy
from jaxrl.files import read_jsonl
from jaxrl.host import CPU_GUARD
from jaxrl.runner import POLICY_FILE, train
from jaxrl.sinks.jsonl import JsonlSink

TINY = ["algo.num_envs=4", "algo.rollout_length=32", "algo.hidden=[32,32]", "algo.num_minibatches=4", "eval.episodes=2", "video.enabled=false"]


def train_in_process(run_dir: Path, *overrides: str) -> dict:
    """Trains like the CLI does, in this process, logging to metrics.jsonl only."""
    raw = compose(*overrides)
    return train(run_config(*overrides), run_dir, [JsonlSink()], raw)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def solved_run(tmp_path_factory) -> Path:
    """The default job with 4 seeds, from the command line: it must solve
    MountainCarContinuous and must not hang (the multi-seed CPU deadlock)."""
    cwd = tmp_path_factory.mktemp("cli")
    proc = run_cli(["seeds=4", "total_timesteps=300000", "run_dir=solved"], cwd=cwd, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "solved"


@pytest.mark.slow
def test_ppo_solves_mountaincar_continuous_every_seed(solved_run):
    summary = json.loads((solved_run / "summary.json").read_text())
    assert summary["algo"] == "ppo" and summary["env"] == "mountaincar_continuous"
    assert summary["seeds"] == [0, 1, 2, 3]
    returns = summary["final"]["eval/return_mean"]
    assert len(returns) == 4 and min(returns) >= 90, returns


@pytest.mark.slow
def test_run_folder_contents(solved_run):
    summary = json.loads((solved_run / "summary.json").read_text())
    assert summary["env_steps"] >= 300_000
    for key in ("wall_s", "compile_s", "sps"):
        assert summary[key] > 0
    assert summary["wall_s"] > summary["compile_s"]
    # a population keeps the CPU guard `import jaxrl` set: faster for it than
    # XLA's concurrent scheduler, which only one member gains from (jaxrl.host)
    assert summary["xla_flags"] == CPU_GUARD
    assert set(summary["final"]) >= {"eval/return_mean", "eval/return_std"}
    config = yaml.safe_load((solved_run / "config.yaml").read_text())
    assert config["algo"]["name"] == "ppo" and config["seeds"] == 4 and config["env"]["name"] == "MountainCarContinuous-v0"
    rows = read_metrics(solved_run)
    assert {r["seed"] for r in rows} == {0, 1, 2, 3}
    steps = sorted({r["step"] for r in rows})
    assert steps[-1] == summary["env_steps"] and len(steps) >= 5
    last = [r for r in rows if r["step"] == steps[-1]]
    assert [r["eval/return_mean"] for r in sorted(last, key=lambda r: r["seed"])] == pytest.approx(returns := summary["final"]["eval/return_mean"])
    assert all(math.isfinite(r["loss/value"]) for r in rows) and "train/episode_return" in rows[-1]
    assert len(returns) == 4


@pytest.mark.slow
def test_run_folder_has_video_curves_and_one_wandb_run_per_seed(solved_run):
    import imageio

    reader = imageio.get_reader(solved_run / "videos" / "final.mp4")
    count = sum(1 for _ in reader)
    assert count > 10
    assert (solved_run / "curves.png").stat().st_size > 10_000
    runs = sorted((solved_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 4 and all(list(r.glob("run-*.wandb")) for r in runs)


def test_wandb_failure_leaves_training_finished(tmp_path):
    from jaxrl.sinks.wandb_sink import WandbSink

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("wandb cannot make its folder inside a file")
    # video.every without video.enabled films nothing
    overrides = [*TINY, "total_timesteps=1024", "num_logs=4", "seeds=2", "video.every=1", "eval.every=1"]
    run_dir = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="wandb logging is off"):
        summary = train(run_config(*overrides), run_dir, [JsonlSink(), WandbSink(mode="offline", dir=blocker / "x")], compose(*overrides))
    assert summary["env_steps"] == 1024 and summary["status"] == "finished"
    rows = read_metrics(run_dir)
    assert len(rows) == 4 * 2 and json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert not (run_dir / "videos").exists()



def test_a_run_that_cannot_write_its_metrics_fails_and_its_rows_have_no_gap(tmp_path):
    """A disk that fills mid-run: metrics.jsonl is the run's record, so a write that fails
    ends the run (exit 1) instead of going on without it and ending "finished" with rows
    missing for good."""
    limit = 6000  # bytes per file: config.yaml fits, metrics.jsonl (about 450 a row) fills after a few chunks

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails (EFBIG), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # evaluated only at the end, so that no policy.msgpack (larger than the limit) is written before
    args = [*TINY, "total_timesteps=20480", "num_logs=40", "seeds=2", "eval.every=100", "logger=none",
            "checkpoint.enabled=false", "compile_cache=null", "run_dir=run"]
    proc = run_cli(args, tmp_path, preexec_fn=limit_file_size, JAX_ENABLE_COMPILATION_CACHE="false")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "could not write" in proc.stderr and "metrics.jsonl at step" in proc.stderr, proc.stderr[-3000:]
    assert "is off for the rest of this run" not in proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "File too large" in summary["error"], summary
    # the last line may be torn where the limit cut it; jaxrl's reader skips it, as a resume does
    steps = sorted({row["step"] for row in read_jsonl(tmp_path / "run" / "metrics.jsonl")})
    assert steps == [512 * (i + 1) for i in range(len(steps))] and 0 < len(steps) < 40, steps

@pytest.mark.slow
def test_load_policy_drives_the_env(solved_run):
    import gymnax

    act = load_policy(solved_run, seed=2)
    env, params = gymnax.make("MountainCarContinuous-v0")
    obs, state = env.reset(jax.random.PRNGKey(7), params)
    total = 0.0
    for t in range(999):
        action = act(np.asarray(obs))
        assert isinstance(action, np.ndarray) and action.shape == (1,) and -1 <= action[0] <= 1
        obs, state, reward, terminated, truncated, _ = env.step(jax.random.PRNGKey(t), state, action, params)
        total += float(reward)
        if terminated or truncated:
            break
    assert terminated and total >= 90
    assert act(np.zeros((5, 2), np.float32)).shape == (5, 1)
    with pytest.raises(ValueError, match="seed 9 was not trained"):
        load_policy(solved_run, seed=9)


@pytest.mark.slow
def test_discrete_ppo_improves_on_mountaincar(tmp_path):
    summary = train_in_process(
        tmp_path / "run", "env=mountaincar", "seeds=2", "total_timesteps=200000", "algo.gamma=0.99", "algo.ent_coef=0.01", "eval.every=100", "video.enabled=false"
    )
    # a policy that never reaches the flag scores -200
    assert max(summary["final"]["eval/return_mean"]) > -170, summary["final"]
    assert min(summary["final"]["eval/return_mean"]) > -200, summary["final"]


def test_sweep_trains_every_member_with_its_own_hyperparameters(tmp_path):
    summary = train_in_process(
        tmp_path / "sweep", *TINY, "total_timesteps=2048", "num_logs=2", "seeds=2", "sweep.algo.lr=[1e-3,1e-4]", "algo.anneal_lr=false"
    )
    assert summary["members"] == [
        {"seed": 0, "algo.lr": 1e-3}, {"seed": 1, "algo.lr": 1e-3}, {"seed": 0, "algo.lr": 1e-4}, {"seed": 1, "algo.lr": 1e-4},
    ]
    rows = read_metrics(tmp_path / "sweep")
    # the traced learning rate each member trained with is its own sweep value
    assert {(r["member"], r["algo.lr"], round(r["opt/lr"], 9)) for r in rows} == {
        (0, 1e-3, 1e-3), (1, 1e-3, 1e-3), (2, 1e-4, 1e-4), (3, 1e-4, 1e-4),
    }
    # config.yaml keeps the sweep, so the run folder alone gives back every member
    from jaxrl.config import from_dict

    saved = from_dict(yaml.safe_load((tmp_path / "sweep" / "config.yaml").read_text()))
    assert saved.members() == summary["members"]
    assert load_policy(tmp_path / "sweep", member=3)(np.zeros(2, np.float32)).shape == (1,)


def test_video_every_n_evaluations_and_at_the_end(tmp_path):
    overrides = [o for o in TINY if not o.startswith("video.")]
    train_in_process(
        tmp_path / "run", *overrides, "total_timesteps=512", "num_logs=4", "eval.every=1", "video.every=2", "video.member=1",
        "seeds=2",
    )
    videos = sorted(p.name for p in (tmp_path / "run" / "videos").glob("*.mp4"))
    # evaluations after chunks 1..4; every 2nd one is filmed, the last one as final.mp4
    assert videos == ["final.mp4", "step256.mp4"]


class InterruptAt:
    """A sink that raises KeyboardInterrupt at its n-th logged point, as Ctrl-C
    (SIGINT) between two chunks would."""

    def __init__(self, n: int):
        self.n = n

    def open(self, run):
        pass

    def log(self, step, rows):
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt

    def close(self, summary):
        self.summary = summary


def test_an_interrupted_run_keeps_its_logs_and_policy_and_is_marked_interrupted(tmp_path):

    from jaxrl.sinks.wandb_sink import WandbSink

    overrides = [*TINY, "total_timesteps=1024", "num_logs=4", "eval.every=1", "seeds=2"]
    interrupt = InterruptAt(2)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(run_config(*overrides), run_dir, [JsonlSink(), WandbSink(mode="offline"), interrupt], compose(*overrides))
    assert interrupt.summary["status"] == "interrupted" and interrupt.summary["env_steps"] == 512
    # the two points logged before the interrupt are on disk, and so is the last evaluated policy
    assert len(read_metrics(run_dir)) == 2 * 2
    assert json.loads((run_dir / "summary.json").read_text()) == interrupt.summary
    act = load_policy(run_dir, seed=1)
    assert act(np.zeros(2, np.float32)).shape == (1,)
    # W&B shows the runs as failed, not finished
    for wandb_run in sorted((run_dir / "wandb").glob("offline-run-*")):
        assert leet_summary(wandb_run)["state"] == "failed"


def test_load_policy_says_what_it_needs(tmp_path):
    run_dir = tmp_path / "run"
    train_in_process(run_dir, *TINY, "total_timesteps=256", "num_logs=1", "seeds=1")
    act = load_policy(run_dir)
    # MountainCarContinuous observations are (2,)
    for obs in (np.zeros(1), np.float32(0), np.zeros((2, 4, 2)), np.zeros(3)):
        with pytest.raises(ValueError, match=r"takes \(2,\) or a batch"):
            act(obs)
    with pytest.raises(ValueError, match="NaN"):
        act(np.array([np.nan, 0.0]))
    assert act(np.zeros((3, 2))).shape == (3, 1)
    policy_file = run_dir / POLICY_FILE
    policy_file.write_bytes(policy_file.read_bytes()[:50])
    with pytest.raises(ValueError, match=f"cannot read {policy_file}"):
        load_policy(run_dir)
    (run_dir / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="no config.yaml in"):
        load_policy(run_dir)


def test_a_full_disk_while_saving_the_policy_leaves_no_temp_file(tmp_path, monkeypatch):
    import errno

    from jaxrl.outputs import save_policy

    def full_disk(path, data):
        path.open("wb").write(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match=f"could not save the policy to {tmp_path / POLICY_FILE}: No space left"):
        save_policy(tmp_path, {"w": np.zeros((1, 3), np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_the_policy_file_keeps_finite_parameters_and_says_which_members_have_none(tmp_path):
    import flax.serialization

    from jaxrl.events import EvaluationDone
    from jaxrl.outputs import PolicyFile

    def evaluated(step, *members):
        return EvaluationDone(0, step, {}, {"w": np.array(members, np.float32)})

    hook, nan = PolicyFile(tmp_path), float("nan")
    # member 1 goes bad before its first evaluation: the file can only hold what it has
    with pytest.warns(RuntimeWarning, match=r"member\(s\) \[1\] are not finite at step 8; policy.msgpack holds non-finite ones"):
        hook.on_evaluation(evaluated(8, [1.0], [nan]))
    # later member 0 goes bad too: it keeps its saved parameters, member 1 still has none
    with pytest.warns(RuntimeWarning, match=r"member\(s\) \[0, 1\] .* keeps the last finite ones of member\(s\) \[0\] "
                                            r"and holds non-finite ones for member\(s\) \[1\]"):
        hook.on_evaluation(evaluated(16, [nan], [nan]))
    saved = flax.serialization.msgpack_restore((tmp_path / POLICY_FILE).read_bytes())
    assert saved["w"][0] == 1.0 and np.isnan(saved["w"][1])


def test_a_member_with_non_finite_parameters_is_not_filmed(tmp_path):
    from jaxrl.outputs import Videos

    # its actions would be NaN: a video of the env standing still, passed off as the policy's
    videos = Videos(None, run_config("seeds=2", "video.member=1"), tmp_path, None)
    with pytest.warns(RuntimeWarning, match="no video at step 8: member 1's policy parameters are not finite"):
        videos.film({"w": np.array([[1.0], [float("nan")]], np.float32)}, 8, "final")
    assert not (tmp_path / "videos").exists()


def test_a_failed_run_says_so_in_its_summary(tmp_path):
    from jaxrl.events import Hook

    class Broken(Hook):
        def on_chunk(self, event):
            raise RuntimeError("first line\nthe last line")

    overrides = [*TINY, "total_timesteps=256", "num_logs=1", "seeds=1"]
    with pytest.raises(RuntimeError):
        train(run_config(*overrides), tmp_path / "run", [JsonlSink()], compose(*overrides), hooks=[Broken()])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: the last line"
    assert summary["env_steps"] == 256 and summary["final"]["eval/return_mean"]
