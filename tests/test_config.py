"""Bad input gets a clear message naming the value and what would be accepted, before compiling."""

from __future__ import annotations

import time

import pytest
from omegaconf import OmegaConf

from conftest import compose, run_cli
from jaxrl.config import ConfigError, from_dict


def config_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(compose(*overrides))
    return str(info.value)


def test_defaults_are_valid():
    run = from_dict(compose())
    assert run.algo_name == "ppo" and run.env.id == "mountaincar_continuous" and run.seeds >= 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["total_timesteps=0"], "total_timesteps must be positive, got 0"),
        (["seeds=-2"], "seeds must be positive, got -2"),
        (["algo.num_envs=0"], "algo.num_envs must be positive"),
        (["algo.num_minibatches=7"], "algo.num_minibatches=7 does not divide the batch of .* = 4096 samples; divisors: \\[1, 2, 4, 8"),
        (["total_timesteps=100"], "total_timesteps=100 is less than one rollout"),
        (["algo.gamma=1.5"], "algo.gamma must be in \\(0, 1\\], got 1.5"),
        (["algo.activation=sigmoid"], "unknown algo.activation 'sigmoid'; choose one of: tanh, relu"),
        (["algo.conv=[[16,0,1]]"], "algo.conv takes \\[features, kernel, stride\\] per layer, all positive, got \\[\\[16, 0, 1\\]\\]"),
        (["+algo.learning_rate=0.1"], "unknown key\\(s\\) algo.learning_rate; valid keys of algo: num_envs, .*lr"),
        (["algo.num_envs=abc"], "algo.num_envs must be an integer, got 'abc'"),
        (["sweep.algo.num_envs=[4,8]"], "sweep.algo.num_envs is not a sweepable hyperparameter of ppo; sweepable: lr, gamma"),
        (["env.suite=dm_control"], "unknown env.suite 'dm_control'; valid suites: gymnax, brax"),
        (["logger.mode=sometimes"], "unknown logger.mode 'sometimes'; choose one of: auto, online"),
        # wandb would only refuse it when its runs start, and the run would train without W&B
        (["logger.project=team/rl"], "logger.project='team/rl' is not a W&B project name: 1 to 128 characters, none of /"),
        (["video.member=5"], "video.member=5 is not a member index; this run has members 0..1"),
        (["sweep.algo.gamma=[0.9,1.5]"], "sweep.algo.gamma=1.5: algo.gamma must be in \\(0, 1\\], got 1.5"),
        (["total_timesteps=3e9"], "total_timesteps=3000000000 is too large"),
        (["total_timesteps=5e20"], "total_timesteps=5e\\+20 is too large for an integer"),
        # below 2**31, but not once rounded up to 20 whole chunks of 4,096-step updates
        (["total_timesteps=2147480000"], "rounded up to whole chunks it is 2147532800 env steps per seed"),
    ],
)
def test_bad_values_are_named(overrides, message):
    assert pytest.importorskip("re").search(message, config_error(*overrides)), config_error(*overrides)


def test_a_field_a_presets_alert_rule_lacks_is_named_with_how_to_add_it():
    from jaxrl.train import compose_config

    # the default preset's first rule is {kind: run, when: [...], level: error}: a mapping in a list
    with pytest.raises(ConfigError, match=r"^unknown key alerts.rules\[0\].points; valid keys of alerts.rules\[0\]: kind, when, "
                                          r"level; a field it lacks is added with \+alerts.rules\[0\].points=<value>$"):
        compose_config(["alerts.rules.0.points=3"])
    with pytest.raises(ConfigError, match=r"^unknown key algo.lrr; valid keys of algo: name, num_envs, [a-z_, ]+$"):
        compose_config(["algo.lrr=3"])


def test_a_replay_buffer_that_cannot_fit_is_refused_before_compiling(tmp_path, capsys):
    from jaxrl.runner import train

    overrides = ["experiment=sac_mountaincar", "total_timesteps=2e9", "algo.buffer_size=2e9", "seeds=2"]
    with pytest.raises(ConfigError, match=r"training state of 2 member\(s\) needs \d+\.\d GiB, more than .* algo.buffer_size"):
        train(from_dict(compose(*overrides)), tmp_path / "run", [], compose(*overrides))
    assert not (tmp_path / "run").exists()
    # the refusal is the only line: no "compiling ..." before it
    assert "compiling" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo.conv=[[16,3,1]]"], r"algo.conv needs image observations \[height, width, channels\]; MountainCarContinuous-v0 gives \[2\]"),
        (["experiment=sac_mountaincar", "algo.conv=[[16,3,1]]"], r"algo.conv needs image observations"),
        (["env=gymnax", "env.name=Breakout-MinAtar", "algo.conv=[[16,3,1],[16,9,1]]"],
         r"algo.conv=\[\[16, 3, 1\], \[16, 9, 1\]\] shrinks Breakout-MinAtar images \[10, 10, 4\] to nothing"),
    ],
)
def test_conv_layers_the_observations_cannot_take_are_refused_before_compiling(tmp_path, capsys, overrides, message):
    from jaxrl.runner import train

    with pytest.raises(ConfigError, match=message):
        train(from_dict(compose(*overrides)), tmp_path / "run", [], compose(*overrides))
    assert not (tmp_path / "run").exists()
    assert "compiling" not in capsys.readouterr().err


def test_large_int_in_scientific_notation_is_accepted():
    assert from_dict(compose("total_timesteps=5e6")).total_timesteps == 5_000_000


def test_cli_rejects_bad_input_before_compiling(tmp_path):
    start = time.perf_counter()
    proc = run_cli(["algo.num_minibatches=7", "logger=none"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: algo.num_minibatches=7 does not divide")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing made, nothing compiled
    # an unknown env name fails when the env is built, still before any compilation
    proc = run_cli(["env=gymnax", "env.name=CartPole-v9", "logger=none"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "unknown gymnax env 'CartPole-v9'; gymnax knows: CartPole-v1" in proc.stderr
    # an unknown config group option gets the same one line, with the valid options
    proc = run_cli(["algo=ppo2"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "error: unknown algo 'ppo2'; valid options: a2c, ddpg, ppo" in proc.stderr
    # a folder that already holds a run is never mixed with a new one
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.jsonl").write_text("{}\n")
    proc = run_cli(["run_dir=old", "logger=none"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "run_dir old already holds files" in proc.stderr
    assert (tmp_path / "old" / "metrics.jsonl").read_text() == "{}\n"
    assert time.perf_counter() - start < 120


@pytest.mark.parametrize(
    "overrides, label",
    [
        (["env=mountaincar"], "mountaincar"),
        (["env=mountaincar", "env.name=CartPole-v1"], "CartPole-v1"),
        (["experiment=playground_cartpole", "env.name=CartpoleSwingup"], "CartpoleSwingup"),
        (["env=mountaincar", "env.name=CartPole-v1", "env.id=cartpole"], "cartpole"),
    ],
)
def test_a_run_is_labelled_with_the_env_it_trains(overrides, label):
    from jaxrl.train import compose_config

    # env.id names the run folder and summary.json's env: a preset's own id must not stick to another env
    assert from_dict(OmegaConf.to_container(compose_config(overrides), resolve=True)).env.id == label
