"""`jaxrl.run` from Python: the command line's config, validation and results."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxrl
from conftest import run_cli
from jaxrl.config import ConfigError
from jaxrl.events import Hook

TINY = [
    "algo.num_envs=4", "algo.rollout_length=32", "algo.hidden=[32,32]", "algo.num_minibatches=4",
    "eval.episodes=2", "total_timesteps=512", "num_logs=2", "eval.every=1", "logger=none",
]


def _rows(run_dir):
    # perf/ holds wall-clock times: the values two identical runs may not share
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]


class Recorder(Hook):
    """A user's hook: what it heard, in order."""

    def __init__(self):
        self.heard = []

    def on_start(self, run):
        self.heard.append(("start", run.run_dir, run.total_steps))

    def on_evaluation(self, event):
        self.heard.append(("evaluation", event.step, jax.tree.leaves(event.params)[0].shape[0]))

    def on_end(self, event):
        # before summary.json is written: a run killed here is unfinished, and its resume ends it again
        self.heard.append(("end", event.summary["status"], (self.heard[0][1] / "summary.json").exists()))

    def on_exit(self, summary):
        self.heard.append(("exit", summary["status"]))


class Started(Hook):
    """A hook that keeps the RunInfo it is started with."""

    def on_start(self, run):
        self.run = run


def test_run_gives_the_same_result_as_the_command_line(tmp_path):
    proc = run_cli(["seeds=2", "video.enabled=false", *TINY, "run_dir=cli"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    recorder = Recorder()
    result = jaxrl.run("ppo", "mountaincar_continuous", seeds=2, overrides=["video.enabled=false", *TINY],
                       run_dir=tmp_path / "api", hooks=[recorder])
    assert recorder.heard == [("start", tmp_path / "api", 512), ("evaluation", 256, 2), ("evaluation", 512, 2),
                              ("end", "finished", False), ("exit", "finished")]

    assert result.run_dir == tmp_path / "api"
    assert _rows(tmp_path / "api") == _rows(tmp_path / "cli")
    # the final params of every member, as load_policy reads them
    assert (tmp_path / "api" / "policy.msgpack").read_bytes() == (tmp_path / "cli" / "policy.msgpack").read_bytes()
    cli_summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert result.summary["final"] == cli_summary["final"]
    assert result.summary == jaxrl.Result.load(tmp_path / "api").summary

    metrics = result.metrics
    assert len(metrics) == 4 and set(metrics["seed"]) == {0, 1}
    assert list(result.final["eval/return_mean"]) == result.summary["final"]["eval/return_mean"]
    act = result.policy(seed=1)
    assert act(np.zeros(2, np.float32)).shape == (1,)
    assert result.curves == tmp_path / "api" / "curves.png" and result.curves.exists()
    assert result.video is None and result.videos == []


@pytest.mark.slow
def test_a_sweep_result_has_one_row_per_member_with_its_values(tmp_path):
    result = jaxrl.run(seeds=2, overrides=[*TINY, "sweep.algo.lr=[1e-3,1e-4]"], run_dir=tmp_path / "sweep")
    final = result.final
    assert list(final["algo.lr"]) == [1e-3, 1e-3, 1e-4, 1e-4] and list(final["seed"]) == [0, 1, 0, 1]
    assert set(result.metrics["algo.lr"]) == {1e-3, 1e-4}
    assert result.video is not None and result.video.suffix == ".mp4" and result.videos == [result.video]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algo": "nope"}, "unknown algo 'nope'"),
        ({"overrides": ["algo.num_minibatches=7"]}, "does not divide"),
        ({"overrides": ["no_such_key=1"]}, "unknown key no_such_key"),
        ({"seeds": 0}, "seeds"),
        ({"env": ["mountaincar"]}, r"^env=\['mountaincar'\] \(list\): env takes a config's name, a string$"),
    ],
)
def test_bad_input_is_a_config_error_before_anything_is_made(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        jaxrl.run(**kwargs, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides", ["seeds=1", None, {"seeds": 1}, 3])
def test_overrides_must_be_a_list(overrides):
    with pytest.raises(TypeError, match=rf"^overrides=.* \({type(overrides).__name__}\): overrides is a list of key=value"):
        jaxrl.run(overrides=overrides)


@pytest.mark.parametrize("folder", ["runs/a b~c=[1]", "it's", "C:\\runs\\", "a\\'b"])
def test_a_run_dir_reaches_the_config_verbatim(folder):
    from jaxrl.api import _quoted
    from jaxrl.train import compose_config

    assert compose_config([f"run_dir={_quoted(folder)}"]).run_dir == folder


def test_jaxrl_run_is_exported_without_importing_jax():
    code = "import sys, jaxrl; jaxrl.run, jaxrl.Result; print(sorted({'jax', 'hydra'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_an_evaluations_episodes_do_not_depend_on_how_many_evaluations_came_before(tmp_path):
    quiet = [*TINY, "video.enabled=false", "checkpoint.enabled=false", "eval.episodes=4"]
    each = jaxrl.run(seeds=1, overrides=quiet, run_dir=tmp_path / "each")  # evaluated at both logged points
    last = jaxrl.run(seeds=1, overrides=[*quiet, "eval.every=2"], run_dir=tmp_path / "last")  # at the end only
    assert each.metrics["eval/return_mean"].notna().sum() == 2 and last.metrics["eval/return_mean"].notna().sum() == 1
    evaluation = [c for c in each.final.columns if c.startswith("eval/")]
    assert evaluation and each.final[evaluation].equals(last.final[evaluation]), (each.final, last.final)


def test_resume_goes_on_in_the_same_folder(tmp_path):
    first = jaxrl.run(seeds=1, overrides=TINY, run_dir=tmp_path / "run")
    first_rows = len(first.metrics)  # read now: metrics is read from the folder, which the resumed run extends
    assert first.video == tmp_path / "run" / "videos" / "final.mp4"
    longer = [o for o in TINY if not o.startswith("total_timesteps")] + ["total_timesteps=1024", "video.enabled=false"]
    # in the same process: the first run released its folder's lock when it ended
    started = Started()
    with pytest.warns(UserWarning, match=r"total_timesteps changes from 512 to 1024: algo.anneal_lr anneals the "
                                         r"learning rate over the new total, so at this resume \(env step 512\) it "
                                         "rises from 0% to 50% of algo.lr"):
        again = jaxrl.run(seeds=1, overrides=longer, resume=tmp_path / "run", hooks=[started])
    assert again.run_dir == first.run_dir
    # the sinks and hooks hear the first session's last evaluation (the console shows it until the next)
    (last,) = started.run.last_evaluation
    assert (last["step"], last["eval/return_mean"]) == (512, first.final["eval/return_mean"][0])
    assert again.summary["env_steps"] == 2 * first.summary["env_steps"]
    assert list(again.metrics["step"]) == [256, 512, 768, 1024] and first_rows == 2
    # the first session's final video shows the policy at step 512, no longer the run's final one
    assert again.video is None and again.videos == [tmp_path / "run" / "videos" / "step512.mp4"]
