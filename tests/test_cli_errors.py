"""Bad input through the real command line: one line naming the bad value,
exit status 2, before anything compiles, and nothing left behind (no run
folder, no multirun folder, no train.log in the working directory)."""

from __future__ import annotations

import concurrent.futures
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli

# Each command fails before compiling, so only its start-up (imports) costs time;
# given first, so that a command's own values win.
QUIET = ["logger=none", "video.enabled=false"]

# (command-line arguments, text the one line must contain)
BAD = [
    (["algo=dqn"], "valid options: a2c, ddpg, ppo, sac, td3, trpo"),
    (["experiment=foo"], "unknown experiment 'foo'; valid options: a2c_mountaincar"),
    (["env=nope"], "unknown env 'nope'; valid options:"),
    (["algo.lrr=0.1"], "unknown key algo.lrr; valid keys of algo:"),
    (["algo=sac", "algo.lrr=0.1"], "valid keys of algo: name, num_envs"),
    (["eval.episodez=3"], "unknown key eval.episodez; valid keys of eval: every, episodes"),
    (["+foo=1"], "unknown key(s) foo; valid top-level keys"),
    (["seeds=1,2"], "add -m"),
    (["algo.lr=1e-3,3e-4"], "add -m to run one job per value, or give sweep.algo.lr=[1e-3,3e-4] to train every value in one"),
    (["sweep.algo.lr=1e-3,3e-4"], "or give sweep.algo.lr=[1e-3,3e-4] to train"),
    (["algo=[1]"], "algo=[1]: algo takes a config's name, one of a2c, ddpg, ppo, sac, td3, trpo"),
    (["env=null"], "env takes a config's name, one of brax, gymnax, humanoid"),
    (["alerts.rules={metric: eval/return_mean, op: '>=', value: 90}"], "alerts.rules takes a list: put the mapping in"),
    (["video=[1]"], "video takes a mapping: set its keys one by one"),
    (["algo.lr=["], "cannot parse"),
    (["run_dir=~/x"], "quote a value"),
    (["experiment=sac_mountaincar", "algo=ppo"], "these are keys of sac"),
    (["-m", "algo.lr=-1"], "algo.lr must be positive"),
    (["-m", "algo.lr=1e-3,nan"], "error: job 1 (algo.lr=nan): algo.lr must be a finite number"),
    # the bad job second: the first must not train before it is refused
    (["-m", "env=gymnax", "env.name=CartPole-v1,CartPol-v1", "seeds=1", "total_timesteps=4096"],
     "error: job 1 (env.name=CartPol-v1): unknown gymnax env 'CartPol-v1'; gymnax knows: CartPole-v1"),
    (["-m", "algo=ppo,sac", "env=mountaincar", "seeds=1", "total_timesteps=20000"], "error: job 1 (algo=sac): SAC needs continuous actions"),
    (["-m", "algo=sac", "env=gymnax", "env.name=Swimmer-misc", "seeds=1", "algo.warmup_steps=10", "algo.buffer_size=2e9",
      "total_timesteps=300,2e9"], "the training state of 1 member(s) needs"),
    (["resume=nofolder"], "resume=nofolder: no such folder; give a run folder, or resume=auto"),
    (["sweep.algo.lr=loguniform(1e-5,1e-3"], "cannot parse 'sweep.algo.lr=loguniform(1e-5,1e-3'"),
    (["-m", "algo.num_envs=4,8", "resume=afile"], "resume=afile does not work with -m: give resume=auto"),
    (["-m", "algo.num_envs=4,8", "resume=auto"], "resume=auto with -m needs a fixed sweep folder, hydra.sweep.dir=<folder>"),
    (["algo.lr=nan"], "algo.lr must be a finite number, got nan"),
    (["algo.lr=inf"], "algo.lr must be a finite number, got inf"),
    (["sweep.algo.lr=[nan,1e-3]"], "sweep.algo.lr must be a finite number"),
    (["sweep.algo.lr=[1e-3,3e-4,0.001]"], "sweep.algo.lr lists 0.001 more than once: its members would be identical"),
    (["total_timesteps=nan"], "total_timesteps must be a finite number"),
    (["seed=99999999999"], "seed must be in 0.."),
    (["algo=sac", "total_timesteps=8192"], "never takes a gradient step"),
    (["algo=td3", "total_timesteps=8192"], "never takes a gradient step"),
    (["algo=sac", "env=mountaincar"], "SAC needs continuous actions; MountainCar-v0 has 3 discrete ones: train it with algo=ppo"),
    (["algo=ddpg", "env=gymnax", "env.name=CartPole-v1"], "DDPG needs continuous actions; CartPole-v1 has 2 discrete"),
    (["env.id=../../../x"], "must be a plain name"),
    (["env.id=.."], "must be a plain name"),
    (["env.episode_length=1e12"], "env.episode_length must be in 1..2147483647"),
    (["env.episode_length=0"], "env.episode_length must be in 1.."),
    (["run_dir=afile"], "is a file"),
    (["run_dir=afile/x"], "is a file"),
    (["run_dir=/proc/x"], "cannot be made in /proc"),
    (["runs_root=/proc/x"], "cannot be made in /proc"),
    ([f"runs_root={'r' * 300}"], "more than the 255"),
    ([f"env.id={'e' * 260}"], "more than the 255"),
]


def _run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    cwd.mkdir()
    (cwd / "afile").write_text("a file where a folder is expected\n")
    before = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
    proc = run_cli([*QUIET, *args], cwd=cwd, timeout=60)
    after = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
    return proc, before, after


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, list[str], list[str]]]:
    """Every bad command, run two at a time (start-up dominates, CI has 2 cores)."""
    root = tmp_path_factory.mktemp("bad")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {" ".join(args): pool.submit(_run, args, root / str(i)) for i, (args, _) in enumerate(BAD)}
        return {command: future.result() for command, future in futures.items()}


@pytest.mark.parametrize(("args", "expected"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2_and_leaves_nothing(results, args, expected):
    command = " ".join(args)
    proc, before, after = results[command]
    stderr = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, f"{command}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr and len(stderr) <= 3, f"{command}: stderr\n{proc.stderr[-2000:]}"
    assert stderr[-1].startswith("error: ") and expected in stderr[-1], f"{command}: {stderr[-1]!r} lacks {expected!r}"
    assert "compiling" not in proc.stderr, f"{command}: failed only after compilation started"
    assert after == before, f"{command}: left {sorted(set(after) - set(before))} in the working directory"


def test_the_cli_prints_its_own_warnings_as_one_line_and_other_libraries_as_python_does():
    import jaxrl.outputs
    from jaxrl.errors import format_warning

    # a warning raised inside jaxrl: its file and source line would only show jaxrl's insides
    own = format_warning(UserWarning("no video: no renderer"), UserWarning, jaxrl.outputs.__file__, 154, "warnings.warn(")
    assert own == "warning: no video: no renderer\n"
    # another library's error quoted in one of jaxrl's warnings keeps it one line (wandb's pydantic error spans four)
    quoted = UserWarning("wandb logging is off: could not start the wandb runs (ValidationError: 1 validation error "
                         "for Settings\nmode\n  Input should be 'online' or 'offline'\n    For further information). Training goes on.")
    assert format_warning(quoted, UserWarning, jaxrl.outputs.__file__, 154, "") == (
        "warning: wandb logging is off: could not start the wandb runs (ValidationError: 1 validation error for Settings "
        "mode Input should be 'online' or 'offline' For further information). Training goes on.\n")
    other = format_warning(UserWarning("deprecated"), UserWarning, "/opt/lib/brax/io/mjcf.py", 480, "warnings.warn(")
    assert other.startswith("/opt/lib/brax/io/mjcf.py:480: UserWarning: deprecated")
