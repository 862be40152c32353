"""Sweeps: grids and random search as one compiled population, their outputs,
refusals, and the population sharded over several devices."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

import jaxrl  # noqa: F401  (sets the CPU scheduler flag before jax starts)
from conftest import compose, run_config
from jaxrl.config import ConfigError
from jaxrl.events import EvaluationDone, RunEnded
from jaxrl.runner import Schedule, build, compile_programs, member_keys, population_hyperparams, train
from jaxrl.sinks import make_sinks
from jaxrl.sinks.base import RunInfo
from jaxrl.sweeps import SweepResults, leaderboard

TINY = (
    "algo.num_envs=4",
    "algo.rollout_length=8",
    "algo.hidden=[16,16]",
    "algo.num_epochs=2",
    "algo.num_minibatches=4",
    "logger=none",
    "video.enabled=false",
)


def compiled(run, algo=None, devices=None):
    """`run`'s programs for two chunks of 3 updates, compiled as the runner compiles them."""
    algo = algo or build(run)[0]
    schedule = Schedule(num_chunks=2, updates_per_chunk=3, steps_per_update=algo.steps_per_update)
    return compile_programs(algo, schedule, member_keys(run), population_hyperparams(run), eval_episodes=2, devices=devices)


def trained(programs, run):
    """(final states, last chunk's metrics {name: [updates, P]}) of `run`'s population."""
    states = programs.init(member_keys(run), population_hyperparams(run))
    states, _ = programs.chunk(states)
    return programs.chunk(states)


def test_a_grid_is_one_compilation_and_equals_its_runs_one_at_a_time():
    run = run_config(*TINY, "sweep.algo.lr=[1e-4,1e-3,1e-2]", "seeds=2", "seed=3")
    assert [(m["seed"], m["algo.lr"]) for m in run.members()] == [(s, lr) for lr in (1e-4, 1e-3, 1e-2) for s in (3, 4)]
    algo, _ = build(run)
    chex.clear_trace_counter()
    algo.update = chex.assert_max_traces(algo.update, n=1)  # a second trace (compilation) raises
    states, metrics = trained(compiled(run, algo), run)
    alone_runs = [run_config(*TINY, f"algo.lr={m['algo.lr']}", "seeds=1", f"seed={m['seed']}") for m in run.members()]
    # one member's programs serve all six: lr and the key are inputs, not constants
    programs = compiled(alone_runs[0])
    for i, alone in enumerate(alone_runs):
        member_of_grid = (jax.tree.map(lambda x: x[i : i + 1], states), jax.tree.map(lambda x: x[:, i : i + 1], metrics))
        # batched and unbatched matmuls round differently (see test_contract.TOLERANCE)
        chex.assert_trees_all_close(trained(programs, alone), member_of_grid, rtol=2e-4, atol=2e-5)
    # members 0 and 4 share seed 3: only their learning rates make their params differ
    kernel = states.actor["params"]["MLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(kernel[0], kernel[4])


@pytest.mark.timeout(240, method="thread")  # a hang in native code ignores signals
def test_a_population_of_128_full_size_members_starts():
    """The default 2x256 PPO: jaxlib 0.10.2's CPU runtime never returned from
    the vmapped init of 100 or more such members on 2 cores (every thread
    idle); the runner initialises member after member instead."""
    run = run_config("seeds=128", "logger=none", "video.enabled=false")
    algo, _ = build(run)
    keys, hp = member_keys(run), population_hyperparams(run)
    schedule = Schedule(num_chunks=1, updates_per_chunk=1, steps_per_update=algo.steps_per_update)
    states = compile_programs(algo, schedule, keys, hp, eval_episodes=1).init(keys, hp)
    alone = jax.jit(algo.init)(keys[7], jax.tree.map(lambda x: x[7], hp))
    chex.assert_trees_all_equal(jax.tree.map(lambda x: x[7], states), alone)


def test_a_random_search_writes_sweep_csv_and_a_leaderboard(tmp_path, capsys):
    overrides = (*TINY, "sweep.algo.lr=loguniform(1e-5,1e-2)", "sweep.samples=16", "sweep.seed=7", "seeds=2",
                 "total_timesteps=64", "num_logs=1", "eval.episodes=1")
    run = run_config(*overrides)
    summary = train(run, tmp_path / "run", make_sinks(run), compose(*overrides))
    with open(tmp_path / "run" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 * 2 and list(rows[0]) == ["member", "algo.lr", "seed", "final_return", "best_return"]
    assert run.sweep.repeats() is None  # continuous draws never repeat
    lrs = [float(r["algo.lr"]) for r in rows]
    assert all(1e-5 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == 16  # each draw shared by its 2 seeds
    assert [float(r["final_return"]) for r in rows] == pytest.approx(summary["final"]["eval/return_mean"])
    assert (tmp_path / "run" / "sweep.png").stat().st_size > 0
    board = capsys.readouterr().out.split("sweep leaderboard")[1].splitlines()[1:18]
    assert board[0].split() == ["rank", "algo.lr", "members", "mean", "std", "min"]
    assert [int(line.split()[0]) for line in board[1:]] == list(range(1, 17))
    means = [float(line.split()[3]) for line in board[1:]]
    assert means == sorted(means, reverse=True)
    # the same sweep.seed draws the same members again (load_policy rebuilds them from config.yaml)
    assert run_config(*overrides).members() == run.members()


def test_the_sweep_plot_leaves_the_callers_matplotlib_backend_and_figures_alone(tmp_path):
    # a notebook that runs a sweep and then plots its own figures (notebooks/sweeps.ipynb)
    import matplotlib
    import matplotlib.pyplot as plt

    from jaxrl.sweeps import plot_sweep

    before = matplotlib.get_backend()
    plt.switch_backend("pdf")  # any backend other than Agg, and the user's figure open in it
    try:
        mine = plt.figure()
        members = [{"algo.lr": lr} for lr in (1e-4, 1e-3, 1e-2)]
        plot_sweep(members, [1.0, 2.0, 3.0], ["algo.lr"], tmp_path / "sweep.png")
        assert (tmp_path / "sweep.png").stat().st_size > 0
        assert matplotlib.get_backend() == "pdf" and plt.fignum_exists(mine.number)
    finally:
        plt.close("all")
        plt.switch_backend(before)


def test_the_final_table_shows_every_drawn_value_whole_in_80_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # stdout is not a terminal: rich draws 80 columns, as in a log file
    overrides = (*TINY, "sweep.algo.lr=loguniform(1e-5,1e-4)", "sweep.algo.gamma=uniform(0.9,0.99)", "sweep.samples=2",
                 "seeds=1", "total_timesteps=64", "num_logs=1", "eval.episodes=1")
    run = run_config(*overrides)
    train(run, tmp_path / "run", make_sinks(run), compose(*overrides))
    table = capsys.readouterr().out.split("final deterministic evaluation")[1]
    assert "…" not in table, table
    for member in run.members():
        assert f"{member['algo.lr']:.4g}" in table and f"{member['algo.gamma']:.4g}" in table, table


def test_a_resumed_sweep_keeps_the_best_return_of_its_earlier_sessions(tmp_path, capsys):
    # member 2 diverged at once (alerts.on_nonfinite=continue): it never had a finite return
    members = [{"algo.lr": 0.001, "seed": 0}, {"algo.lr": 0.01, "seed": 0}, {"algo.lr": 1e30, "seed": 0}]
    nan = float("nan")
    # the first session's rows, as metrics.jsonl holds them (null: a NaN return)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in [
        {"step": 100, "member": 0, "eval/return_mean": 80.0}, {"step": 100, "member": 1, "eval/return_mean": None},
        {"step": 100, "member": 2, "eval/return_mean": None},
        {"step": 200, "member": 0, "eval/return_mean": 90.0}, {"step": 200, "member": 1, "eval/return_mean": 20.0},
        {"step": 200, "member": 2, "eval/return_mean": None}]))
    hook = SweepResults(members, tmp_path)
    hook.on_start(RunInfo(tmp_path, "run", "ppo", "mc", {}, members, 400, start_step=200))
    hook.on_evaluation(EvaluationDone(2, 300, {"eval/return_mean": [70.0, 30.0, nan]}, None))
    hook.on_evaluation(EvaluationDone(3, 400, {"eval/return_mean": [60.0, 40.0, nan]}, None))
    hook.on_end(RunEnded(400, {"final": {"eval/return_mean": [60.0, 40.0, nan]}}, None, None))
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["final_return"], r["best_return"]) for r in rows] == [("60.0", "90.0"), ("40.0", "40.0"), ("nan", "nan")]


def test_leaderboard_groups_seeds_of_a_setting_best_mean_first():
    members = [{"seed": s, "algo.lr": lr} for lr in (0.1, 0.2) for s in (0, 1)]
    rows = leaderboard(members, [1.0, 3.0, 10.0, 0.0])
    assert [(r["algo.lr"], r["mean"], r["std"], r["min"], r["members"]) for r in rows] == [(0.2, 5.0, 5.0, 0.0, 2), (0.1, 2.0, 1.0, 1.0, 2)]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sweep.algo.hidden=[[16],[32]]"], "sweep.algo.hidden is not a sweepable hyperparameter of ppo; sweepable: lr, .*"
         "compiled into the program .a shape or a constant of it. needs one program per value: Hydra multirun, "
         "-m algo.hidden=<a>,<b>"),
        (["sweep.algo.num_envs=[4,8]"], "-m algo.num_envs=<a>,<b>"),
        # a typo is not a setting a multirun could vary
        (["sweep.algo.lrr=[1e-4,1e-3]"], "^unknown hyperparameter sweep.algo.lrr of ppo; sweepable: lr, gamma, .*[a-z]$"),
        (["sweep.algo.lr=lognormal(1,2)", "sweep.samples=2"], r"sweep.algo.lr=lognormal\(1,2\) is not a search space; give a list "
         r"\[a,b,...\], loguniform\(low,high\), uniform\(low,high\) or choice\(a,b,...\)"),
        (["sweep.algo.lr=loguniform(0,1e-2)", "sweep.samples=2"], "needs low > 0"),
        (["sweep.algo.lr=uniform(1e-2,1e-3)", "sweep.samples=2"], "needs two bounds low < high"),
        (["sweep.algo.lr=loguniform(1e-4,1e-2,3)", "sweep.samples=2"], "takes two bounds, got 3; give loguniform.low,high."),
        (["sweep.algo.lr=choice()", "sweep.samples=2"], "has no options"),
        (["sweep.algo.lr=[1e-3,1e-4]", "sweep.seed=3"], "sweep.seed=3 seeds the draws of a random search, and this sweep draws nothing"),
        (["sweep.algo.lr=uniform(1e-3,x)", "sweep.samples=2"], "'x' is not a number"),
        (["sweep.algo.lr=loguniform(1e-5,1e-2)"], "is a random search: say how many draws, e.g. sweep.samples=16"),
        (["sweep.samples=4"], "sweep.samples=4 needs a random search space"),
        (["sweep.algo.lr=loguniform(1e-5,1e-2)", "sweep.samples=0"], "sweep.samples must be a positive integer, got 0"),
        (["sweep.algo.gamma=uniform(0.5,2)", "sweep.samples=8"],
         r"sweep.algo.gamma=\S+ \(drawn from uniform\(0.5,2\) with sweep.seed=0\): algo.gamma must be in \(0, 1\]"),
        (["sweep.algo.lr=[1e-3,abc]"], "sweep.algo.lr must be a list of numbers, got \\[0.001, 'abc'\\]"),
        (["sweep.algos.lr=[1]"], "unknown sweep key\\(s\\) sweep.algos; valid: sweep.algo.<hyperparameter>, sweep.samples, sweep.seed"),
        # `sweep: {}` has no schema, so Hydra lets a scalar or a list replace it or its `algo`
        (["sweep=foo"], "sweep takes a mapping: set its keys one by one \\(sweep.algo.<hyperparameter>=\\[a,b\\], sweep.samples=N"),
        (["sweep.algo=[1e-4,1e-3]"], "sweep.algo takes a mapping: set its keys one by one \\(sweep.algo.<hyperparameter>="),
        # hyperparameters the static settings never read: the members would train identically
        (["algo=td3", "sweep.algo.noise_theta=[0.05,0.5]"],
         "^sweep.algo.noise_theta has no effect on td3 with these settings: .*algo.noise=gaussian .*; set algo.noise=ou$"),
        (["algo=ddpg", "sweep.algo.target_noise_clip=[0.1,0.5]"],
         "^sweep.algo.target_noise_clip has no effect on ddpg .*; set algo.target_noise > 0$"),
        (["algo=sac", "algo.autotune=false", "sweep.algo.alpha_lr=loguniform(1e-4,1e-3)", "sweep.samples=2"],
         "^sweep.algo.alpha_lr has no effect on sac .*algo.autotune=false keeps alpha at algo.init_alpha$"),
    ],
)
def test_bad_sweeps_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        run_config(*overrides)
    assert re.search(message, str(info.value)) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["algo=td3", "algo.noise=ou", "sweep.algo.noise_theta=[0.05,0.5]"],
        # one of the settings smooths the target, so the clip matters to it
        ["algo=ddpg", "sweep.algo.target_noise=[0,0.2]", "sweep.algo.target_noise_clip=[0.1,0.5]"],
        ["algo=td3", "sweep.algo.target_noise_clip=[0.1,0.5]"],
        ["algo=sac", "sweep.algo.alpha_lr=[1e-4,1e-3]"],
    ],
)
def test_a_hyperparameter_is_swept_where_the_settings_read_it(overrides):
    assert len(run_config(*overrides).sweep.points()) in (2, 4)


def test_a_search_that_draws_a_setting_twice_is_told(tmp_path):
    overrides = (*TINY, "sweep.algo.ent_coef=choice(0,0.01)", "sweep.algo.lr=[3e-4,1e-3]", "sweep.samples=4",
                 "seeds=1", "total_timesteps=64", "num_logs=1", "eval.episodes=1")
    run = run_config(*overrides)
    settings = [tuple(sorted(m.items())) for m in run.members()]
    repeated = len(settings) - len(set(settings))
    assert repeated > 0  # sweep.seed=0 draws 0.01 three times
    with pytest.warns(UserWarning) as warned:
        train(run, tmp_path / "run", make_sinks(run), compose(*overrides))
    said = [str(w.message) for w in warned if "repeat" in str(w.message)]
    assert said == [
        f"{repeated} of the sweep's 8 settings repeat another (choice draws with replacement): their members train "
        "identical copies of others; as a grid, sweep.algo.ent_coef=[0,0.01], each option trains once"
    ]


def test_search_spaces_mix_with_grids_and_seeds():
    run = run_config("sweep.algo.lr=choice(1e-3,3e-4)", "sweep.algo.gamma=[0.9,0.99]", "sweep.samples=3", "seeds=2")
    members = run.members()
    assert len(members) == 3 * 2 * 2
    assert {m["algo.lr"] for m in members} <= {1e-3, 3e-4} and {m["algo.gamma"] for m in members} == {0.9, 0.99}
    # draws (outer) x grid x seeds (inner): a draw's lr is shared by its grid points and seeds
    assert len({m["algo.lr"] for m in members[:4]}) == 1


SHARDED = """
import sys
sys.path.insert(0, {tests!r})
import jaxrl, jax, chex
from conftest import run_config
from test_sweeps import TINY, compiled, trained

assert jax.device_count() == 2, jax.devices()
run = run_config(*TINY, "seeds={seeds}")
programs = compiled(run, devices=jax.devices()[:1]), compiled(run)
one, two = (trained(p, run) for p in programs)
# 3 members: padded to 4, 2 per device; 1 member: its 4 envs split over the devices, the learner's
# means cross-device sums
spec = jax.sharding.PartitionSpec(*{spec!r})
assert two[0].obs.sharding.spec == spec and len(two[0].obs.sharding.device_set) == 2, two[0].obs.sharding
assert programs[1].padded == {padded} and two[0].obs.shape[0] == {padded}, programs[1]
assert jax.tree.leaves(two[1])[0].shape[1] == {seeds}  # the padding's metrics are dropped
chex.assert_trees_all_close((programs[0].unpad(one[0]), one[1]), (programs[1].unpad(two[0]), two[1]), rtol=1e-4, atol=1e-5)
print("sharded run equals")
"""


def run_on_two_devices(seeds: int, spec: tuple, padded: int | None = None) -> None:
    env = {
        **os.environ,
        # the scheduler flag too: setting XLA_FLAGS turns off jaxrl's own guard against the CPU deadlock
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_cpu_enable_concurrency_optimized_scheduler=false",
    }
    script = SHARDED.format(tests=str(Path(__file__).parent), seeds=seeds, spec=spec, padded=padded or seeds)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0 and "sharded run equals" in proc.stdout, proc.stderr[-3000:]


def test_a_population_sharded_over_two_devices_and_padded_equals_one_device():
    # 3 members over 2 devices: padded to 4, 2 on each (an even population takes the same path unpadded)
    run_on_two_devices(3, ("member",), padded=4)


@pytest.mark.slow  # about 100 s on 2 busy cores
def test_a_lone_member_with_its_envs_sharded_over_two_devices_equals_one_device():
    run_on_two_devices(1, (None, "env"))


def test_each_wandb_run_of_a_random_search_carries_its_drawn_values():
    from jaxrl.sinks.wandb_sink import member_config, member_names

    overrides = ("sweep.algo.lr=loguniform(1e-5,1e-2)", "sweep.algo.gamma=[0.9,0.99]", "sweep.samples=2")
    run, resolved = run_config(*overrides), compose(*overrides)
    for member, name in zip(run.members(), member_names("group", run.members())):
        config = member_config(resolved, member)
        assert (config["algo"]["lr"], config["algo"]["gamma"], config["seed"]) == (member["algo.lr"], member["algo.gamma"], member["seed"])
        assert f"algo.lr={member['algo.lr']:g}" in name


def test_a_sweep_csv_that_cannot_be_written_is_a_warning_and_the_leaderboard_and_plot_still_come(tmp_path, capsys):
    # the run's summary.json says finished before this hook runs: a failed write must not make it failed
    members = [{"algo.lr": 0.001, "seed": 0}, {"algo.lr": 0.01, "seed": 0}]
    (tmp_path / "sweep.csv").mkdir()  # stands for any write error: a full disk, a read-only folder
    hook = SweepResults(members, tmp_path)
    with pytest.warns(UserWarning, match="could not write sweep.csv: IsADirectoryError"):
        hook.on_end(RunEnded(400, {"final": {"eval/return_mean": [60.0, 40.0]}}, None, None))
    assert "sweep leaderboard" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv", "sweep.png"]
