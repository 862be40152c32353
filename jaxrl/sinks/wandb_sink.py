"""Weights & Biases sink: one wandb run per population member, grouped by run name.

Env steps are every chart's x-axis (the `env_step` metric), so members, chunks
and resumed runs line up. With no API key the runs are written offline into
the run folder, to be browsed with `wandb leet` and uploaded with `wandb sync`.

wandb must never stop training, nor hold it up for long: after the runs
start, every wandb call runs on one worker thread, in order, so that a wandb
service that hangs holds up that thread, not training. The first exception
of a wandb call becomes one warning and switches the sink off for the rest of
the run; a service that stops answering for `timeout_s` is stopped, so that
the process can still end.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import numbers
import queue
import re
import shlex
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import wandb
from wandb.sdk.lib import runid

from jaxrl.errors import RESUMABLE_EXIT
from jaxrl.files import stopped_resumably, write_atomically
from jaxrl.sinks import WANDB_MODES
from jaxrl.sinks.base import RunInfo, Sink
from jaxrl.sinks.console import echo

__all__ = ["STEP_METRIC", "WandbSink", "member_config", "member_names", "resolve_mode"]

RUN_IDS = "wandb_runs.json"
"""The run folder's list of W&B run ids, one per member: a resumed run continues them."""

STEP_METRIC = "env_step"
"""The x-axis of every logged metric: env steps taken per member."""

# Copied from summary.json into each member's wandb summary, as they are.
_RUN_TOTALS = ("env_steps", "sps", "wall_s", "compile_s")

# wandb calls waiting for the worker thread at most: a training loop that
# logs faster than wandb takes it waits, as it would if it called wandb itself
_BACKLOG = 100


_logger = logging.getLogger(__name__)


def resolve_mode(mode: str) -> str:
    """The wandb mode ("online", "offline" or "disabled") that a `logger.mode`
    value stands for.

    "auto" follows wandb's own settings first (WANDB_MODE, or `wandb offline`
    / `wandb disabled` run earlier), then is "online" when wandb finds
    credentials (WANDB_API_KEY, WANDB_IDENTITY_TOKEN_FILE, a netrc entry for
    the W&B host, or an api_key in wandb's settings files) and "offline"
    otherwise. It reads local files and the environment only, never the
    network, and never prompts.

    Raises:
        ValueError: for a mode outside "auto", "online", "offline", "disabled".
        wandb.errors.AuthenticationError: when a configured key is malformed.
    """
    if mode not in WANDB_MODES:
        raise ValueError(f"logger.mode must be one of {WANDB_MODES}, got {mode!r}")
    if mode != "auto":
        return mode

    # wandb 0.31 has no public "is a key configured?" call that neither
    # prompts nor contacts the server; these are the functions wandb.init
    # itself resolves credentials with.
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth

    settings = wandb_setup.singleton().settings
    if settings.mode == "disabled":
        return "disabled"
    if settings.mode in ("offline", "dryrun"):
        return "offline"
    credentials = wbauth.authenticate_session(
        host=settings.base_url,
        source="jaxrl",
        prompt=False,
        update_session=False,
    )
    return "online" if credentials else "offline"


class WandbSink(Sink):
    """Streams metrics to Weights & Biases: one run per population member.

    Implements the `Sink` protocol (`open`, `log`, `close`); the runner also
    calls `log_video`, `log_image` and `log_artifact`. Each member gets its
    own wandb run, grouped under the run's name, with job_type the algorithm
    and a config holding that member's own seed and hyperparameters.

    Args mirror the Hydra `logger` config group:
        project, entity: where the runs go on W&B (entity None: the default
            entity of the API key).
        tags: tags on every run.
        mode: "auto" (online when an API key is configured, else offline; see
            `resolve_mode`), "online", "offline" or "disabled" (wandb is not
            touched at all).
        dir: the folder in which wandb makes its `wandb/` folder; None: the
            run folder.
        timeout_s: how long wandb's service may leave jaxrl waiting, at most:
            for a free place among the calls waiting for it during training,
            and for the runs to finish (uploads included) at the end. Past
            it, the sink stops the service so that the process can end.
    """

    def __init__(
        self,
        project: str = "jaxrl",
        entity: str | None = None,
        tags: Sequence[str] = (),
        mode: str = "auto",
        dir: str | Path | None = None,  # noqa: A002 (the Hydra key is `logger.dir`)
        timeout_s: float = 300.0,
    ) -> None:
        if mode not in WANDB_MODES:
            raise ValueError(f"logger.mode must be one of {WANDB_MODES}, got {mode!r}")
        if not timeout_s > 0:
            raise ValueError(f"logger.timeout_s must be > 0 seconds, got {timeout_s!r}")
        self.project = project
        self.entity = entity
        self.tags = list(tags)
        self.mode = mode
        self.dir = None if dir is None else Path(dir).expanduser()
        self.timeout_s = timeout_s
        self._runs: list[Any] = []
        self._broken = False
        self._closed = False
        # the wandb calls made after open, in order, for the worker thread
        self._calls: queue.Queue[tuple[str, Callable[..., Any], bool] | None] = queue.Queue(_BACKLOG)
        self._worker: threading.Thread | None = None
        # what went wrong on the worker, for the training thread to warn about
        self._failures: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._summary: dict[str, Any] = {}
        # set when a call found no free place for timeout_s: close waits no longer
        self._stalled = False
        # the mode `open` resolved "auto" to
        self._offline = False

    @property
    def _live(self) -> bool:
        return self._worker is not None and not self._broken and not self._closed

    def open(self, run: RunInfo) -> None:
        """Start one wandb run per member of `run` (about 0.2-0.3 s each,
        offline on 2 CPU cores), then print once where the runs are."""
        self._guard("start the wandb runs", self._start, run)
        if self._runs:
            self._worker = threading.Thread(target=self._serve, name="jaxrl-wandb", daemon=True)
            self._worker.start()

    def log(self, step: int, rows: list[dict[str, float]]) -> None:
        """Log `rows[i]` to member i's run at `step` env steps.

        Returns once the rows are queued for the worker thread, which hands
        them to wandb's service (about 0.1-1 ms per member); writing and
        uploading happen in that service's process.
        """
        # copied: the caller's rows may change before the worker sends them
        self._submit("log metrics", functools.partial(self._log_rows, step, [dict(row) for row in rows]))

    def log_video(self, step: int, member: int, path: str | Path) -> None:
        """Log the video file at `path` (mp4, or gif/webm/ogg) as
        "video/episode" in member `member`'s run, at `step` env steps."""
        self._submit("log a video", functools.partial(self._log_media, step, member, "video/episode", wandb.Video, path))

    def log_image(self, step: int, member: int, key: str, path: str | Path) -> None:
        """Log the image file at `path` (e.g. the learning-curve PNG) under
        `key` in member `member`'s run, at `step` env steps."""
        self._submit("log an image", functools.partial(self._log_media, step, member, key, wandb.Image, path))

    def log_artifact(self, step: int, kind: str, path: str | Path, aliases: list[str]) -> None:
        """Log a complete checkpoint folder or policy file as an artifact of
        member 0's run (one copy for the population), named
        "<group>-<kind>" (characters W&B refuses in it, such as spaces or "=",
        made "_"), with `aliases`.

        Files are added one at a time, here, so that the artifact holds them
        as they are now, whatever `checkpoint.keep` deletes later: temporary
        files (`*.tmp*`, `*tempstate*`, orbax's `*.orbax-checkpoint-tmp-*`)
        are never added, and a file that vanishes or cannot be read is left
        out with a warning; the others still go. A failure to log the
        artifact is one warning, and the sink stays on for metrics.

        Offline, only the final checkpoint (alias "final") is logged: wandb
        keeps a copy of every logged file until `wandb sync`, and a copy of
        every checkpoint (8 GB every 5 minutes for `humanoid_sac`) would fill
        the disk; the run folder holds the newest ones. No logged file is
        kept in wandb's artifact cache after its upload, for the same reason.
        """
        self._report()
        if not self._live or (self._offline and kind == "checkpoint" and "final" not in aliases):
            return
        try:
            artifact = self._artifact(step, kind, Path(path))
        except Exception as err:  # noqa: BLE001 (an upload is never worth a lost run or lost metrics)
            warnings.warn(f"could not log {path} to W&B ({type(err).__name__}: {err})", RuntimeWarning, stacklevel=2)
            return
        send = functools.partial(self._runs[0].log_artifact, artifact, aliases=aliases)
        self._submit(f"log {path} to W&B", send, fatal=False)

    def _artifact(self, step: int, kind: str, path: Path) -> Any:
        from jaxrl.checkpoint import is_temporary

        # W&B refuses an artifact name with other characters than these, and a
        # run folder's name may hold any ("ppo lr=3e-4"): no upload would ever go
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self._runs[0].group}-{kind}")
        artifact = wandb.Artifact(name, type="model" if kind == "policy" else kind, metadata={STEP_METRIC: step})
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if not p.is_dir())
        for file in files:
            relative = file.relative_to(path.parent if file == path else path)
            if is_temporary(relative):
                continue
            try:
                # hashes the file and copies it into wandb's staging folder, from which
                # the upload deletes it (skip_cache: not moved into ~/.cache/wandb)
                artifact.add_file(str(file), name=str(relative), skip_cache=True)
            except (OSError, ValueError) as err:
                warnings.warn(f"left {file} out of the W&B artifact: {err}", RuntimeWarning, stacklevel=4)
        return artifact

    def alert(self, title: str, text: str, level: str, member: int | None = None) -> None:
        """`run.alert` on member `member`'s run (every member's run when None).

        Called from the alerts' delivery thread, which bounds the wait for a
        hung service. A failure is raised to it (it retries and reports once)
        and leaves metric logging on.
        """
        if self._live:
            levels = {"info": wandb.AlertLevel.INFO, "warn": wandb.AlertLevel.WARN, "error": wandb.AlertLevel.ERROR}
            for wandb_run in self._runs if member is None else [self._runs[member]]:
                wandb_run.alert(title=title[:63], text=text, level=levels[level])

    def close(self, summary: dict[str, Any]) -> None:
        """Write each member's final values into its run's summary and finish
        the runs, waiting `timeout_s` at most.

        Member i gets "final/<metric>" = summary["final"][<metric>][i], plus
        the run totals env_steps, sps (all members together), wall_s and
        compile_s. A resumable stop (summary "status" "stopped") shows as
        preempted in W&B; when training did not finish otherwise ("failed",
        "interrupted", or "stopped" on a bad state: NaN/inf values), the runs
        are finished with exit code 1, so W&B shows them as failed. After
        a wandb failure, the runs still open are finished as failed and no
        error is raised. When the runs have not finished within `timeout_s`,
        or the service stopped answering during training, the service is
        stopped (its runs' last records may be lost) with one warning.
        """
        if self._closed:
            return
        self._closed = True
        if self._worker is None:
            # wandb never started, or failed while starting: nothing is queued
            self._abandon()
            self._report()
            return
        self._summary = summary
        deadline = time.monotonic() + self.timeout_s
        if not self._stalled:
            with contextlib.suppress(queue.Full):
                self._calls.put(None, timeout=self.timeout_s)
            self._worker.join(max(0.0, deadline - time.monotonic()))
        self._report()
        if self._worker.is_alive():
            self._stop_service()
        elif self._broken and not _services():
            # the service died: wandb's exit hook would try to reach it and print a traceback,
            # and a next run in this process (a multirun's next job) would find it dead
            _forget_service()

    def _submit(self, doing: str, call: Callable[[], Any], fatal: bool = True) -> None:
        """Queue `call` for the worker thread, waiting `timeout_s` at most for
        a free place. A failure of a `fatal` call switches the sink off; of
        another, it is one warning."""
        self._report()
        if not self._live:
            return
        try:
            self._calls.put((doing, call, fatal), timeout=self.timeout_s)
        except queue.Full:
            self._broken = self._stalled = True
            warnings.warn(
                f"wandb logging is off for the rest of this run: wandb's service took no call for"
                f" logger.timeout_s={self.timeout_s:g} s while {_BACKLOG} waited. Training goes on;"
                " metrics.jsonl holds every point.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _serve(self) -> None:
        """The worker thread: makes the queued calls in order, then, at
        close, finishes the runs."""
        while (item := self._calls.get()) is not None:
            doing, call, fatal = item
            if self._broken:
                continue
            try:
                call()
            except Exception as err:  # any wandb failure, whatever its type
                self._failed(doing, err, fatal)
        try:
            if not self._broken:
                self._finish(self._summary)
        except Exception as err:  # noqa: BLE001 (reported once, like any wandb failure)
            self._failed("finish the wandb runs", err, fatal=True)
        finally:
            self._abandon()

    def _failed(self, doing: str, err: Exception, fatal: bool) -> None:
        _logger.debug("wandb sink failed to %s", doing, exc_info=True)
        if not fatal:
            self._failures.put(f"could not {doing} ({type(err).__name__}: {err})")
        elif not self._broken:
            self._broken = True
            self._failures.put(
                f"wandb logging is off for the rest of this run: could not {doing}"
                f" ({type(err).__name__}: {err}). Training goes on."
            )

    def _report(self) -> None:
        """Warn, on the calling thread, about what failed on the worker."""
        while True:
            try:
                message = self._failures.get_nowait()
            except queue.Empty:
                return
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _guard(self, doing: str, fn: Callable[..., None], *args: Any) -> None:
        """Call `fn` on this thread; its first exception becomes a single
        warning and switches the sink off."""
        try:
            fn(*args)
        except Exception as err:  # any wandb failure, whatever its type
            self._failed(doing, err, fatal=True)
            self._report()

    def _stop_service(self) -> None:
        """Kill wandb's service process, which has left the worker thread
        waiting for `timeout_s`: the worker's call then fails, and neither
        wandb's own exit hook nor the next run's wandb waits for it."""
        self._broken = True
        services = _services()
        # its own children (the system monitor) first, so that none outlives it
        doomed = []
        for service in services:
            with contextlib.suppress(psutil.Error):
                doomed += service.children(recursive=True)
        for process in doomed + services:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(services, timeout=10)
        # the worker's waiting call fails now; it skips what is queued and
        # ends, so that no wandb call is under way while wandb is torn down
        with contextlib.suppress(queue.Full):
            self._calls.put(None, timeout=10)
        if self._worker is not None:
            self._worker.join(10)
        _forget_service()
        what = ", ".join(f"pid {p.pid}" for p in services) or "none found among this process's children"
        warnings.warn(
            f"wandb's service did not answer within logger.timeout_s={self.timeout_s:g} s: stopped it ({what})"
            " so that this process can end. The W&B runs may miss their last records; metrics.jsonl,"
            " summary.json and the checkpoints are complete.",
            RuntimeWarning,
            stacklevel=3,
        )

    def _start(self, run: RunInfo) -> None:
        mode = resolve_mode(self.mode)
        if mode == "disabled":
            return
        self._offline = mode == "offline"
        root = (self.dir if self.dir is not None else Path(run.run_dir)).absolute()
        # Made here so that a folder that cannot be made is reported; wandb
        # itself would quietly write to the system's temporary folder instead.
        root.mkdir(parents=True, exist_ok=True)
        # a resumed run folder continues the same W&B runs, by id
        ids_file = Path(run.run_dir) / RUN_IDS
        resumed = ids_file.exists()
        ids = json.loads(ids_file.read_text()) if resumed else [runid.generate_id() for _ in run.members]
        if not resumed:
            write_atomically(ids_file, json.dumps(ids))
        names = member_names(run.name, run.members)
        for member, name, run_id in zip(run.members, names, ids, strict=True):
            wandb_run = wandb.init(
                id=run_id,
                resume="allow" if resumed else None,
                project=self.project,
                entity=self.entity,
                group=run.name,
                name=name,
                job_type=run.algo,
                tags=self.tags,
                config=member_config(run.config, member),
                dir=str(root),
                mode=mode,
                reinit="create_new",
                # wandb's own banner and footer, repeated for every member,
                # would drown the console; _announce says it once for all.
                settings=wandb.Settings(silent=True),
            )
            # Kept before define_metric so that close() finishes it even if
            # what follows fails.
            self._runs.append(wandb_run)
            wandb_run.define_metric(STEP_METRIC)
            wandb_run.define_metric("*", step_metric=STEP_METRIC)
        self._announce(run.name, mode)

    def _announce(self, group: str, mode: str) -> None:
        count = len(self._runs)
        if mode == "online":
            echo(f"wandb: {count} runs in group {group}: {self._runs[0].project_url}")
            return
        # Where wandb really put the runs, should it have fallen back to a
        # temporary folder after all.
        for folder in sorted({str(Path(r.sync_dir).parent) for r in self._runs}):
            # quoted: the commands are for pasting into a shell, and a run folder may hold spaces
            echo(
                f"wandb: {count} runs of group {group} saved offline in {folder}\n"
                f"wandb:   browse them (live too): wandb leet {shlex.quote(folder)}\n"
                f"wandb:   upload them later:      wandb sync {shlex.quote(folder)}"
            )

    def _log_rows(self, step: int, rows: list[dict[str, float]]) -> None:
        # W&B's own history step (`_step`) is the env step too: an offline
        # resumed session cannot learn its run's last `_step`, and would
        # count from 0 again, over the earlier sessions' rows once synced.
        # Online, a row replayed after a kill is below the run's step and
        # wandb drops it instead of logging it twice.
        for wandb_run, row in zip(self._runs, rows, strict=True):
            wandb_run.log({**row, STEP_METRIC: step}, step=step)

    def _log_media(
        self, step: int, member: int, key: str, media: Callable[[str], Any], path: str | Path
    ) -> None:
        # the same `_step` as the metrics at `step` (see _log_rows): one row
        self._runs[member].log({key: media(str(path)), STEP_METRIC: step}, step=step)

    def _finish(self, summary: dict[str, Any]) -> None:
        totals = {key: summary[key] for key in _RUN_TOTALS if key in summary}
        finals = summary.get("final", {})
        for i, wandb_run in enumerate(self._runs):
            wandb_run.summary.update(
                {**totals, **{f"final/{key}": values[i] for key, values in finals.items()}}
            )
        status = summary.get("status", "finished")
        # a run stopped on NaN/inf values is not resumed as it is (resume=auto refuses it)
        resumable = stopped_resumably(summary)
        if resumable:
            # W&B shows the runs as preempted, not failed
            for wandb_run in self._runs:
                wandb_run.mark_preempting()
        # a run that failed, was interrupted or diverged is marked failed in W&B, not finished
        exit_code = 0 if status == "finished" else RESUMABLE_EXIT if resumable else 1
        while self._runs:
            self._runs[0].finish(exit_code=exit_code)
            self._runs.pop(0)

    def _abandon(self) -> None:
        runs, self._runs = self._runs, []
        for wandb_run in runs:
            # The failure was already reported once; a dead service makes
            # every finish fail too, and that must not reach training.
            with contextlib.suppress(Exception):
                wandb_run.finish(exit_code=1)


def _services() -> list[psutil.Process]:
    """wandb's service processes (wandb-core) started by this process."""
    services = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.name() == "wandb-core":
                services.append(child)
    return services


def _forget_service() -> None:
    """Tear wandb down after its service died or was killed, so that its exit
    hook does not try to reach the service and a next `wandb.init` starts a
    new one."""
    # wandb's teardown of a dead service fails before it stops wandb's
    # event-loop thread, which, left running, aborts the interpreter at exit
    # about one time in five ("FATAL: exception not rethrown"): stopped here;
    # wandb has no public call for it
    from wandb.sdk import wandb_setup

    loop = getattr(wandb_setup._singleton, "_asyncer", None)  # noqa: SLF001
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        wandb.teardown()  # it fails on the dead connection, and still forgets it
        if loop is not None:
            loop.join()


def member_names(group: str, members: Sequence[dict[str, Any]]) -> list[str]:
    """The wandb run names of a population's members: "<group>-seed<seed>",
    then "-<key>=<value>" for each swept hyperparameter, e.g.
    "ppo-run-seed0-algo.lr=0.0003". Names that would repeat (a `choice`
    drawn twice with the same seed, values equal to 6 digits) end in
    "-member<i>", i being the member's row in sweep.csv, so that no two
    runs of a group share a name."""
    names = []
    for member in members:
        parts = [f"{group}-seed{member['seed']}"]
        for key, value in member.items():
            if key != "seed":
                is_float = isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
                parts.append(f"{key}={value:g}" if is_float else f"{key}={value}")
        names.append("-".join(parts))
    counts = Counter(names)
    return [f"{name}-member{i}" if counts[name] > 1 else name for i, name in enumerate(names)]


def member_config(config: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
    """`config` with this member's own values: "seed" at the top level and
    each dotted sweep key ("algo.lr") at its place in the nested config, so
    that filtering or grouping runs by "algo.lr" in W&B sees the value this
    member trained with. `config` itself is left untouched."""
    merged = copy.deepcopy(config)
    for key, value in member.items():
        *parents, leaf = key.split(".")
        node = merged
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return merged
