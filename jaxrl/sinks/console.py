"""Console output: a live progress bar while training, a table at the end.

Where the bar cannot be redrawn in place (stdout to a log file or CI, also
with FORCE_COLOR; TERM=dumb), one plain line per logged point replaces it, so
logs stay readable. In Jupyter and Colab the same bar is redrawn in place in
the output cell. "-" shows a value not there yet (no finished episode, no
evaluation), "nan" a diverged one. When the reader of a stdout pipe goes
away (`| head`), the console goes quiet and training goes on.
"""

from __future__ import annotations

import io
import math
import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

from jaxrl.sinks.base import RunInfo, Sink


def _fmt(value: float | None) -> str:
    """One decimal ("nan" for a diverged member), or "-" for None: nothing to
    show yet (no finished episode, no evaluation)."""
    return "-" if value is None else f"{value:.1f}"


def _mean(rows: list[dict[str, float]], key: str) -> float | None:
    """The mean of `key` over the rows that have it, NaN if any of them is:
    a diverged member shows, rather than hides behind the others; None when no row has it."""
    values = [r[key] for r in rows if key in r]
    return sum(values) / len(values) if values else None


def quiet_stdout() -> None:
    """Points stdout's file descriptor at os.devnull, as rich does when the
    reader of a pipe has gone (`python -m jaxrl.train | head`): every later
    write to stdout, anyone's, then succeeds and goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def echo(text: str) -> None:
    """Prints `text` to stdout, flushed; a closed pipe quiets stdout rather
    than raise: nothing printed is worth a lost run."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        quiet_stdout()


class _Console(Console):
    """A rich Console on stdout that goes quiet when the reader of its pipe has
    gone; rich's own also raises SystemExit(1), which ended training."""

    def on_broken_pipe(self) -> None:
        """Stops printing; stdout's writes go to os.devnull from now on."""
        self.quiet = True
        quiet_stdout()


def _redraws(console: Console) -> bool:
    """Whether `console` can redraw a bar in place: a notebook, or an
    interactive terminal (not TERM=dumb). FORCE_COLOR and TTY_COMPATIBLE make
    rich take a file for a terminal, interactive too: they ask for colours,
    so a bar is drawn only where stdout is a real tty, or where TTY_INTERACTIVE=1 asks for it."""
    if console.is_jupyter:
        return True
    if not console.is_interactive:
        return False
    isatty = getattr(console.file, "isatty", None)
    return os.environ.get("TTY_INTERACTIVE") == "1" or bool(isatty and isatty())


class _MetricsColumn(ProgressColumn):
    """The bar's last column: recent return, last evaluation and steps/s, on
    one line, cut with an ellipsis where the console is too narrow."""

    def render(self, task: Task) -> Text:
        """The task's fields `ret`, `eval` and `sps` as one line."""
        fields = task.fields
        line = f"return {fields['ret']}  eval {fields['eval']}  {fields['sps']} steps/s"
        return Text(line, no_wrap=True, overflow="ellipsis")


class _NotebookBar:
    """A rich Progress drawn as HTML into one Jupyter/Colab output, updated in
    place through an IPython display handle. rich's own live display needs
    ipywidgets in a notebook; a display handle works in every frontend
    (Jupyter, Colab, VS Code) and in notebooks executed headless (nbclient)."""

    def __init__(self, progress: Progress) -> None:
        from IPython.display import display

        self.progress = progress
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> dict[str, str]:
        # force_jupyter=False: a recording console, not another notebook output. 120 columns
        # hold a 50M-step run's bar whole: steps, times, returns of sign and four digits, 634k steps/s
        console = Console(record=True, file=io.StringIO(), width=120, force_jupyter=False)
        console.print(self.progress.get_renderable())
        html = console.export_html(clear=False, inline_styles=True, code_format="<pre style='line-height:1.3'>{code}</pre>")
        return {"text/plain": console.export_text(), "text/html": html}

    def update(self) -> None:
        """Redraws the bar with the progress's current state."""
        self._handle.update(self._bundle(), raw=True)


class ConsoleSink(Sink):
    """Progress (env steps, steps/s, recent return, last evaluation) and a final table."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or _Console()
        self._progress: Progress | None = None
        self._notebook: _NotebookBar | None = None
        self._task = None
        self._run: RunInfo | None = None
        self._last_eval: float | None = None

    def open(self, run: RunInfo) -> None:
        """Prints the run header and starts the progress bar."""
        self._run = run
        # a resumed run shows its last evaluation until this session's first
        self._last_eval = _mean(run.last_evaluation, "eval/return_mean")
        self.console.print(
            f"[bold]{escape(run.algo)}[/] on [bold]{escape(run.env)}[/]: {len(run.members)} member(s) x "
            f"{run.total_steps:,} env steps -> {escape(str(run.run_dir))}",
            soft_wrap=True,  # rich wraps a log file at 80 columns: the path stays whole, for copying
        )
        if _redraws(self.console):
            # where the console is narrow (80 columns), rich narrows the columns that may wrap:
            # only the metrics may, so the steps and times stay whole and the metrics are cut
            self._progress = Progress(
                TextColumn("[bold blue]training", table_column=Column(no_wrap=True)),
                BarColumn(bar_width=16, table_column=Column(no_wrap=True)),
                MofNCompleteColumn(table_column=Column(no_wrap=True)),
                TextColumn("steps", table_column=Column(no_wrap=True)),
                TimeElapsedColumn(table_column=Column(no_wrap=True)),
                TimeRemainingColumn(table_column=Column(no_wrap=True)),
                _MetricsColumn(),
                console=self.console,
                # rich's speed comes from the samples of the last 30 s: logged points further apart
                # left one sample and no estimate. The whole session's rate (compilation excluded:
                # it ends before the first point) is the better guess for a steady trainer anyway
                speed_estimate_period=math.inf,
                # a notebook has no refresh thread: the bar is redrawn at each logged point
                auto_refresh=not self.console.is_jupyter,
            )
            self._task = self._progress.add_task(
                "train", total=run.total_steps, completed=run.start_step, sps="-", ret="-", eval=_fmt(self._last_eval)
            )
            if self.console.is_jupyter:
                self._notebook = _NotebookBar(self._progress)
            else:
                self._progress.start()

    def log(self, step: int, rows: list[dict[str, float]]) -> None:
        """Advances the bar to `step` and shows member means."""
        ret = _mean(rows, "train/episode_return")
        evaluation = _mean(rows, "eval/return_mean")
        if evaluation is not None:
            self._last_eval = evaluation
        sps = sum(r.get("perf/sps", 0.0) for r in rows)
        fields = dict(sps=f"{sps:,.0f}", ret=_fmt(ret), eval=_fmt(self._last_eval))
        if self._progress is not None:
            self._progress.update(self._task, completed=step, **fields)
            if self._notebook is not None:
                self._notebook.update()
        else:
            self.console.print(
                f"step {step:>10,}/{self._run.total_steps:,}  {fields['sps']} steps/s  "
                f"return {fields['ret']}  eval {fields['eval']}",
                highlight=False,
            )

    def close(self, summary: dict[str, Any]) -> None:
        """Stops the bar and prints one row per member with its final evaluation."""
        if self._progress is not None and self._notebook is None:
            self._progress.stop()
        status = summary.get("status", "finished")
        if self._run is None or status != "finished":
            reason = summary.get("error", f"after {summary.get('env_steps', 0):,} env steps per member")
            self.console.print(
                f"[bold red]training {escape(status)}[/]: {escape(str(reason))}" if self._run else "training stopped before it started"
            )
            return
        final = summary.get("final", {})
        table = Table(title=f"{summary.get('algo')} on {summary.get('env')}: final deterministic evaluation")
        sweep_keys = [k for k in (self._run.members[0] if self._run else {}) if k != "seed"]
        # fold: a table wider than the console (80 columns in a log file) wraps a value rather than cut it to "2.70694e-…"
        for column in ["member", "seed", *sweep_keys, "return mean", "return std", "episode length"]:
            table.add_column(column, justify="right", overflow="fold")
        for i, member in enumerate(self._run.members if self._run else []):
            cells = [str(i), str(member["seed"]), *(f"{member[k]:.4g}" for k in sweep_keys)]  # as the leaderboard
            for key in ("eval/return_mean", "eval/return_std", "eval/length_mean"):
                values = final.get(key) or []
                cells.append(f"{values[i]:.2f}" if i < len(values) and values[i] is not None else "-")
            table.add_row(*cells)
        self.console.print(table)
        if "sps" in summary:
            cache = summary.get("compile_cache") or {}
            hits = cache.get("hits") or 0
            cached = f", {hits} program{'s' * (hits > 1)} from the compile cache" if hits else ""
            self.console.print(
                f"{summary['env_steps']:,} env steps per member in {summary['wall_s']:.1f} s "
                f"(compile {summary['compile_s']:.1f} s{cached}, {summary['sps']:,.0f} steps/s) -> {escape(str(self._run.run_dir))}",
                soft_wrap=True,
            )
