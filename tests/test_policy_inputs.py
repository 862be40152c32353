"""What `load_policy`, `jaxrl.run`, `Result` and `python -m jaxrl.film` take,
and what they say about anything else, on one tiny trained run."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from flax import serialization, traverse_util

import jaxrl
from jaxrl import film, load_policy
from jaxrl.checkpoint import CHECKPOINTS
from jaxrl.config import ConfigError
from jaxrl.events import Hook
from jaxrl.outputs import POLICY_FILE
from jaxrl.policy import film_policy

TINY = [
    "algo.num_envs=4", "algo.rollout_length=32", "algo.hidden=[32,32]", "algo.num_minibatches=4",
    "eval.episodes=2", "total_timesteps=512", "num_logs=2", "eval.every=1", "logger=none",
]

pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two members; training films member 1 (video.member=1) to videos/final.mp4."""
    run_dir = tmp_path_factory.mktemp("inputs") / "run"
    result = jaxrl.run(seeds=2, overrides=[*TINY, "video.member=1"], run_dir=run_dir)
    # kept apart: the tests below film into the run folder
    shutil.copy(run_dir / "videos" / "final.mp4", run_dir.parent / "trained-final.mp4")
    return result


@pytest.mark.parametrize(
    "kwargs",
    [{"member": np.float64(1.0)}, {"member": 1.0}, {"member": np.int64(1)}, {"seed": np.float64(1.0)}, {"seed": np.int32(1)}],
)
def test_integral_numbers_pick_a_member(trained, kwargs):
    obs = np.array([-0.5, 0.01], np.float32)
    np.testing.assert_array_equal(load_policy(trained.run_dir, **kwargs)(obs), load_policy(trained.run_dir, member=1)(obs))


def test_a_step_may_be_a_numpy_integer_or_an_integral_float(trained):
    step = int(trained.summary["env_steps"])  # the last checkpoint: the last evaluated policy
    obs = np.array([-0.5, 0.01], np.float32)
    for value in (np.int64(step), float(step), np.float64(step)):
        np.testing.assert_array_equal(load_policy(trained.run_dir, step=value)(obs), load_policy(trained.run_dir)(obs))


def test_by_default_the_first_member_of_a_run_whose_seeds_do_not_start_at_zero(trained, tmp_path):
    # the same run as if trained with seed=5: its members' seeds are 5 and 6, and it has no seed 0
    run_dir = tmp_path / "seed5"
    shutil.copytree(trained.run_dir, run_dir)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("\nseed: 0\n", "\nseed: 5\n"))
    obs = np.array([-0.5, 0.01], np.float32)
    first = load_policy(trained.run_dir, member=0)(obs)
    np.testing.assert_array_equal(load_policy(run_dir)(obs), first)
    np.testing.assert_array_equal(jaxrl.Result(run_dir, {}).policy()(obs), first)
    np.testing.assert_array_equal(load_policy(run_dir, seed=6)(obs), load_policy(trained.run_dir, member=1)(obs))


def test_a_seed_and_a_member_that_disagree_are_refused(trained, capsys):
    with pytest.raises(ValueError, match=r"member 0 of .* was trained with seed 0, not seed 1; give seed or member alone"):
        load_policy(trained.run_dir, seed=1, member=0)
    with pytest.raises(ValueError, match="not seed 1"):
        film_policy(trained.run_dir, seed=1, member=0)
    assert film.main([str(trained.run_dir), "--seed", "1", "--member", "0"]) == 2
    assert "was trained with seed 0, not seed 1" in capsys.readouterr().err
    obs = np.array([-0.5, 0.01], np.float32)
    np.testing.assert_array_equal(load_policy(trained.run_dir, seed=1, member=1)(obs), load_policy(trained.run_dir, member=1)(obs))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"member": "1"}, "member"), ({"member": 1.5}, "member"), ({"member": True}, "member"),
        ({"seed": "0"}, "seed"), ({"step": "20480"}, "step"), ({"member": np.float64("nan")}, "member"),
    ],
)
def test_a_non_integer_argument_is_a_value_error_naming_it(trained, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}=.* is not an integer; {name} takes an integer") as err:
        load_policy(trained.run_dir, **kwargs)
    assert "truncated" not in str(err.value)


@pytest.mark.parametrize(
    ("obs", "said"),
    [([np.nan, 0.0], "NaN or infinite values"), ([0.0, -np.inf], "NaN or infinite values"), ([1e40, 0.0], "values beyond float32's range")],
)
def test_a_non_finite_observation_is_a_value_error_saying_what_it_takes(trained, obs, said):
    with pytest.raises(ValueError, match=rf"^observation holds {said}.*; this policy takes \(2,\) or a batch"):
        trained.policy()(np.array(obs))


@pytest.mark.parametrize("run_dir", [None, 3, ["runs/a"]])
def test_a_run_dir_that_is_not_a_path_is_a_type_error_naming_it(run_dir):
    for read in (load_policy, film_policy, jaxrl.Result.load):
        with pytest.raises(TypeError, match=r"^run_dir=.* takes a run folder's path, a str or Path$"):
            read(run_dir)


def test_a_run_folder_under_home_may_be_given_with_a_tilde(trained, monkeypatch):
    monkeypatch.setenv("HOME", str(trained.run_dir.parent))
    assert jaxrl.Result.load("~/run").summary == trained.summary
    obs = np.array([-0.5, 0.01], np.float32)
    np.testing.assert_array_equal(load_policy("~/run", member=1)(obs), trained.policy(member=1)(obs))


@pytest.mark.parametrize("conv", [[], [[8, 3, 2]]], ids=["dense", "conv"])
def test_a_minatar_policy_takes_the_envs_own_image_observations_as_well_as_flat_ones(tmp_path, conv):
    import gymnax
    import jax

    overrides = [*TINY, "env.name=Breakout-MinAtar", "video.enabled=false", f"algo.conv={conv}"]
    result = jaxrl.run(env="gymnax", seeds=1, overrides=overrides, run_dir=tmp_path / "run")
    if conv:  # the saved policy's first layer: one member, 3x3 windows of the 4 channels, 8 maps
        saved = serialization.msgpack_restore((result.run_dir / "policy.msgpack").read_bytes())
        kernels = [v.shape for k, v in traverse_util.flatten_dict(saved, sep="/").items() if "Conv_0/kernel" in k]
        assert kernels and set(kernels) == {(1, 36, 8)}, kernels
    env, params = gymnax.make("Breakout-MinAtar")
    images = np.stack([np.asarray(env.reset(jax.random.PRNGKey(i), params)[0]) for i in range(3)])  # [3, 10, 10, 4] bool
    act = result.policy()
    flat = act(images.reshape(3, -1))
    np.testing.assert_array_equal(act(images), flat)
    assert [int(act(image)) for image in images] == [int(a) for a in flat]
    with pytest.raises(ValueError, match=r"shape \(10, 10\); this policy takes \(400,\) or a batch \(N, \*\(400,\)\), "
                                         r"or in the env's own shape \(10, 10, 4\) or \(N, \*\(10, 10, 4\)\)"):
        act(images[0, :, :, 0])


def test_hooks_that_are_not_a_list_of_hooks_are_a_type_error_before_anything_is_made(tmp_path):
    for hooks, said in [("x", r"hooks='x' \(str\): hooks is a list"), (None, r"hooks=None \(NoneType\): hooks is a list"),
                        ([Hook(), object()], r"hooks\[1\]=<object object at .*> \(object\) is not a jaxrl\.events\.Hook")]:
        with pytest.raises(TypeError, match=said):
            jaxrl.run(overrides=TINY, hooks=hooks, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("obs", [{"a": 1}, "ab", [[0.0, 1.0], [2.0]], None, np.array(["a", "b"])])
def test_an_observation_that_is_not_an_array_of_numbers_is_a_value_error(trained, obs):
    act = trained.policy(seed=0)
    with pytest.raises(ValueError, match=r"this policy takes \(2,\) or a batch .*, arrays of numbers"):
        act(obs)
    assert act([0.0, 0.0]).shape == (1,)  # a list of numbers is an array


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overrides": ["total_timesteps=1e4", 3]}, r"override 3 \(int\) is not a string"),
        ({"seeds": True}, r"seeds=True \(bool\): seeds takes a positive int"),
        ({"seeds": 2.0}, r"seeds=2.0 \(float\): seeds takes a positive int"),
        ({"overrides": ["-m", "algo.lr=1e-4,1e-3"]}, r"'-m' is the command line's Hydra multirun flag.*sweep\.algo\.lr=\["),
        ({"overrides": ["algo.lr=1e-4,1e-3"]}, r"jaxrl.run trains one compiled program: sweep in it with sweep\.algo\.lr=\[1e-4,1e-3\]$"),
    ],
)
def test_run_refuses_bad_input_with_a_config_error(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        jaxrl.run(**kwargs, run_dir=tmp_path / "run")
    assert "add -m" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_run_with_resume_auto_of_a_finished_run_gives_its_result(trained):
    # a notebook run again from the top after its run finished: nothing is trained
    again = jaxrl.run(seeds=2, overrides=[*TINY, "video.member=1"], run_dir=trained.run_dir, resume="auto")
    assert again.run_dir == trained.run_dir and again.summary == trained.summary


def test_a_result_keeps_its_folder_after_chdir(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(trained.run_dir.parent)
    result = jaxrl.Result.load("run")
    monkeypatch.chdir(tmp_path)
    assert result.run_dir.is_absolute() and result.run_dir == trained.run_dir
    assert result.curves is not None and result.video == trained.run_dir / "videos" / "final.mp4"
    assert len(result.metrics) == 4
    assert os.getcwd() == str(tmp_path)


def test_a_multirun_folder_or_an_unended_run_is_refused_saying_what_to_give(trained, tmp_path, capsys):
    multi = tmp_path / "multirun"  # as python -m jaxrl.train -m leaves it: a run folder per job, its own summary.json
    for job in ("0", "1"):
        shutil.copytree(trained.run_dir, multi / job)
    (multi / "summary.json").write_text('{"jobs": []}')
    said = rf"{multi} is a Hydra multirun's folder, not a run folder; give one of its jobs' run folders, .* \(jobs: 0, 1\)$"
    for read in (jaxrl.Result.load, load_policy, film_policy):
        with pytest.raises(FileNotFoundError, match=said):
            read(multi)
    assert film.main([str(multi)]) == 2 and "(jobs: 0, 1)" in capsys.readouterr().err
    assert jaxrl.Result.load(multi / "1").final["seed"].tolist() == [0, 1]

    killed = multi / "0"
    (killed / "summary.json").unlink()  # a run killed, or still training
    with pytest.raises(FileNotFoundError, match=f"no summary.json in {killed}: the run has not ended"):
        jaxrl.Result.load(killed)
    assert load_policy(killed)(np.zeros(2, np.float32)).shape == (1,)
    with pytest.raises(FileNotFoundError, match="it is not a jaxrl run folder"):
        jaxrl.Result.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no summary.json in .*/typo: no such folder"):
        jaxrl.Result.load(tmp_path / "typo")
    with pytest.raises(FileNotFoundError, match="/typo: no such folder; give a jaxrl run folder"):
        load_policy(tmp_path / "typo")

    (killed / POLICY_FILE).unlink()  # stopped before its first evaluation: its checkpoints hold policies
    newest = max(int(p.name) for p in (killed / CHECKPOINTS).iterdir() if p.name.isdigit())
    said = rf"the run has not evaluated a policy yet; its newest checkpoint is at step {newest}: give step={newest} "
    with pytest.raises(FileNotFoundError, match=said):
        load_policy(killed)
    assert film.main([str(killed)]) == 2 and f"(python -m jaxrl.film: --step {newest})" in capsys.readouterr().err
    assert load_policy(killed, step=newest)(np.zeros(2, np.float32)).shape == (1,)


def test_film_makes_the_video_training_made(trained, tmp_path):
    # what a run trained with video.enabled=false gets from python -m jaxrl.film: the same episode
    run_dir = tmp_path / "run"
    shutil.copytree(trained.run_dir, run_dir)
    shutil.rmtree(run_dir / "videos")
    assert film.main([str(run_dir)]) == 0
    assert (run_dir / "videos" / "final.mp4").read_bytes() == (trained.run_dir.parent / "trained-final.mp4").read_bytes()


def test_film_of_an_unfinished_run_is_named_for_its_latest_evaluation_not_final(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained.run_dir, run_dir)
    shutil.rmtree(run_dir / "videos")
    (run_dir / "summary.json").unlink()  # as a run killed mid-training leaves it
    assert film.main([str(run_dir)]) == 0
    step = trained.summary["env_steps"]  # this short run evaluated last at its end
    assert [p.name for p in (run_dir / "videos").iterdir()] == [f"step{step}.mp4"]
    assert (run_dir / "videos" / f"step{step}.mp4").read_bytes() == (trained.run_dir.parent / "trained-final.mp4").read_bytes()


def test_film_says_in_one_line_when_it_cannot_write_the_video(trained, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained.run_dir, run_dir)
    shutil.rmtree(run_dir / "videos")
    (run_dir / "videos").write_text("")  # a file where the folder goes, as a read-only folder would refuse it
    assert film.main([str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot write the video into {run_dir}: ")


def test_film_films_the_runs_video_member_and_names_another_members_file(trained, capsys):
    videos = trained.run_dir / "videos"
    assert film.main([str(trained.run_dir)]) == 0
    assert capsys.readouterr().out.startswith(f"{videos / 'final.mp4'}: return ")
    own = film_policy(trained.run_dir, member=1)
    assert own.mp4 == videos / "final.mp4"
    before = (videos / "final.mp4").read_bytes()

    assert film.main([str(trained.run_dir), "--member", "0"]) == 0
    assert capsys.readouterr().out.startswith(f"{videos / 'final-member0.mp4'}: return ")
    assert film.main([str(trained.run_dir), "--seed", "0"]) == 0
    assert (videos / "final.mp4").read_bytes() == before  # the run's own video is untouched
    assert film_policy(trained.run_dir).episode_return == own.episode_return  # default: video.member
    assert jaxrl.Result.load(trained.run_dir).video == videos / "final.mp4"
    assert videos / "final-member0.mp4" in jaxrl.Result.load(trained.run_dir).videos


@pytest.mark.parametrize("value", ["0", "-3"])
def test_film_refuses_max_frames_below_one(trained, capsys, value):
    assert film.main([str(trained.run_dir), "--max-frames", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--max-frames {value} is below 1" in err
    with pytest.raises(ValueError, match="max_frames takes an integer >= 1"):
        film_policy(trained.run_dir, max_frames=int(value))
