"""The console sink: what a person watching training sees, in a terminal, in a
log file and in a notebook, driven with a rich Console writing to a StringIO."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from conftest import start_cli
from jaxrl.files import read_summary
from jaxrl.sinks.base import RunInfo
from jaxrl.sinks.console import ConsoleSink

CHEAP = ("total_timesteps=4096", "logger=none", "video.enabled=false", "seeds=1")


def run_info(run_dir: str = "runs/exp", total: int = 5000, start: int = 0, members: int = 1) -> RunInfo:
    """A run as the runner opens sinks with, members seeds 0.. of no sweep."""
    return RunInfo(
        Path(run_dir), "exp", "ppo", "mc", {}, [{"seed": i} for i in range(members)], total, start_step=start
    )


def finished(run_dir: str = "runs/exp") -> dict:
    """A finished run's summary, as the runner hands it to `close`."""
    return {
        "status": "finished",
        "algo": "ppo",
        "env": "mc",
        "env_steps": 5000,
        "wall_s": 3.0,
        "compile_s": 1.0,
        "sps": 2500,
        "final": {"eval/return_mean": [1.5]},
        "run_dir": run_dir,
    }


def test_paths_and_errors_are_printed_as_they_are_not_as_markup():
    # square brackets are rich markup: "[lr=1e-3]" vanished, "[/x]" raised MarkupError
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=200))
    sink.open(run_info("runs/exp[lr=1e-3]"))
    sink.close(finished())
    error = "XlaRuntimeError: INTERNAL: during context [pre-optimization]: bad [/x]"
    failed = ConsoleSink(Console(file=out, width=200))
    failed.open(run_info("runs/exp[lr=1e-3]"))
    failed.close({"status": "failed", "error": error})
    text = out.getvalue()
    assert text.count("-> runs/exp[lr=1e-3]\n") == 3, text  # two headers and the final line
    assert f"training failed: {error}\n" in text


def test_a_log_file_keeps_the_run_folder_on_one_line():
    # a log file is 80 columns to rich: the path was split over two lines, and a reader's copy of it broke
    run_dir = "/home/someone/experiments/a-rather-long-project-name/runs/20261206-024754-ppo-mountaincar_continuous"
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out))
    sink.open(run_info(run_dir))
    sink.close(finished())
    lines = out.getvalue().splitlines()
    assert lines[0] == f"ppo on mc: 1 member(s) x 5,000 env steps -> {run_dir}"
    assert lines[-1].startswith("5,000 env steps per member in 3.0 s") and lines[-1].endswith(f" -> {run_dir}")


@pytest.mark.parametrize(
    "env", [{"TERM": "dumb", "TTY_COMPATIBLE": "1"}, {"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}]
)
def test_a_console_that_cannot_redraw_gets_one_line_per_logged_point(env, monkeypatch):
    # TERM=dumb: rich's bar drew nothing until the end; FORCE_COLOR or TTY_COMPATIBLE with stdout to a
    # file: the log filled with the bar's redraws
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=100))
    sink.open(run_info())
    for step in (1000, 2000):
        sink.log(step, [{"perf/sps": 500.0}])
        assert f"step {step:>10,}/5,000  500 steps/s" in out.getvalue()
    sink.close(finished())
    assert "\x1b[2K" not in out.getvalue() and "/5000" not in out.getvalue()  # no line erased for a redraw, no bar


def test_a_resumed_run_shows_its_last_evaluation_until_it_evaluates_again():
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=100))
    resumed = RunInfo(Path("runs/exp"), "exp", "ppo", "mc", {}, [{"seed": 0}, {"seed": 1}], 5000, start_step=2000,
                      last_evaluation=[{"step": 2000, "eval/return_mean": 90.0}, {"step": 2000, "eval/return_mean": 92.0}])
    sink.open(resumed)
    sink.log(3000, [{"perf/sps": 500.0}, {"perf/sps": 500.0}])
    sink.log(4000, [{"eval/return_mean": 93.0}, {"eval/return_mean": 95.0}])
    lines = [line for line in out.getvalue().splitlines() if line.startswith("step")]
    assert "eval 91.0" in lines[0] and "eval 94.0" in lines[1], lines


class Clock:
    """A fake clock for rich (Console's get_time): time moves only when a test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def live_sink(monkeypatch, width: int = 120, clock: Clock | None = None) -> tuple[ConsoleSink, io.StringIO]:
    """A sink drawing its live bar into a StringIO, as into a terminal `width` columns wide."""
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system=None, get_time=clock or Clock())
    return ConsoleSink(console), out


def last_frame(out: io.StringIO) -> str:
    """The bar as last drawn: the text after the last cursor movement."""
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", out.getvalue()).splitlines()
    return [line for line in lines if line.startswith("training ")][-1]


def test_a_resumed_run_starts_its_bar_where_its_checkpoint_was(monkeypatch):
    sink, out = live_sink(monkeypatch)
    sink.open(run_info(total=5000, start=3000))
    sink.close(finished())
    assert " 3000/5000 " in last_frame(out), out.getvalue()


def test_the_bar_estimates_the_time_left_when_logged_points_are_minutes_apart(monkeypatch):
    # rich forgot every progress sample older than 30 s: points a minute apart never gave an estimate
    clock = Clock()
    sink, out = live_sink(monkeypatch, clock=clock)
    sink.open(run_info(total=5000))
    for now, step in ((40.0, 1000), (100.0, 2000)):
        clock.now = now
        sink.log(step, [{"perf/sps": 17.0}])
    sink.close(finished())  # draws the bar a last time, as it stood
    # 1,000 steps in the 60 s between the two points: the 3,000 left take 180 s
    assert " 2000/5000 steps 0:01:40 0:03:00 " in last_frame(out), last_frame(out)


def test_nan_shows_as_nan_and_a_dash_only_before_there_is_a_value():
    # "-" means no finished episode (no evaluation) yet; a diverged run showed "-", or its last finite evaluation
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=120))
    sink.open(run_info(members=2))
    nan = float("nan")
    sink.log(1000, [{"perf/sps": 1.0}, {"perf/sps": 1.0}])
    sink.log(2000, [{"train/episode_return": 1.0, "eval/return_mean": -0.1}, {"train/episode_return": 3.0}])
    sink.log(3000, [{"train/episode_return": nan}, {"train/episode_return": 3.0, "eval/return_mean": nan}])
    sink.log(4000, [{"perf/sps": 1.0}, {"perf/sps": 1.0}])
    lines = [line.split("steps/s  ")[1] for line in out.getvalue().splitlines() if line.startswith("step ")]
    assert lines == ["return -  eval -", "return 2.0  eval -0.1", "return nan  eval nan", "return -  eval nan"]


def test_an_80_column_terminal_shows_the_steps_and_times_whole_and_cuts_the_metrics(monkeypatch):
    # the bar's numbers came last and were cut first: "0/163…"
    clock = Clock()
    sink, out = live_sink(monkeypatch, width=80, clock=clock)
    sink.open(run_info(total=50_000_000))
    for now, step in ((10.0, 1_000_000), (20.0, 2_000_000)):
        clock.now = now
        sink.log(step, [{"perf/sps": 100_000.0, "train/episode_return": -12.3, "eval/return_mean": -0.1}])
    sink.close(finished())
    frame = last_frame(out)
    assert len(frame) <= 80 and frame.endswith("…"), frame
    assert " 2000000/50000000 steps 0:00:20 0:08:00 return -12.3" in frame, frame


def test_a_notebook_bar_shows_a_50m_step_run_whole(monkeypatch):
    bundles = []

    class Handle:
        """An IPython display handle that keeps what it is given."""

        def update(self, bundle, raw):
            bundles.append(bundle)

    def display(obj, raw=False, display_id=None):
        # rich's own notebook printing (the header) comes through here too: only the bar's bundles count
        if display_id:
            bundles.append(obj)
            return Handle()
        return None

    monkeypatch.setattr("IPython.display.display", display)
    sink = ConsoleSink(Console(file=io.StringIO(), force_jupyter=True))
    sink.open(run_info(total=50_000_000))
    # as wide as a long run gets: 50M steps at 634k steps/s (README, humanoid_ppo), returns of sign and four digits
    sink.log(16_000_000, [{"perf/sps": 634_000.0, "train/episode_return": -6681.0, "eval/return_mean": -6017.3}])
    (line,) = bundles[-1]["text/plain"].splitlines()
    assert " 16000000/50000000 steps " in line and line.endswith("return -6681.0  eval -6017.3  634,000 steps/s"), line


def test_training_outlives_a_closed_stdout_pipe(tmp_path):
    # `python -m jaxrl.train ... | head -1`: rich exited with status 1 at the next write, the run marked failed
    proc = start_cli(tmp_path, *CHEAP, "sweep.algo.lr=[1e-4,1e-3]", "run_dir=run")
    assert proc.stdout.readline().startswith("ppo on mountaincar_continuous: 2 member(s)")
    proc.stdout.close()  # the reader goes away, as `head -1` does
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert read_summary(tmp_path / "run")["status"] == "finished"
    assert (tmp_path / "run" / "sweep.csv").exists() and (tmp_path / "run" / "curves.png").exists()


def test_echo_to_a_pipe_nobody_reads_goes_quiet_and_the_process_ends_well():
    # the sweep leaderboard, the multirun summary and the W&B lines print with echo
    read, write = os.pipe()
    os.close(read)
    script = "from jaxrl.sinks.console import echo\necho('leaderboard')\necho('again')\nprint('printed after')"
    proc = subprocess.run([sys.executable, "-c", script], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert (proc.returncode, proc.stderr) == (0, "")
