"""Hydra multirun (`-m`): one job per shape-changing setting, locally or through
a cluster launcher (`hydra/launcher=submitit_slurm`, `submitit_local`, ray).

Each job trains in its own run folder, `<sweep dir>/<job number>`; when every
job has ended, `MultirunSummary` (a Hydra callback, registered in
configs/config.yaml) collects their summary.json files into the sweep
folder's `summary.json` and prints one line per job.

Where the jobs run in processes of their own, the launcher's process waits
on them: a SIGINT or SIGTERM to it is passed on to submitit_local's jobs as
SIGTERM, so that each checkpoints and stops as a single run does, and the
multirun ends with its summary; a cluster's jobs (submitit_slurm, Ray) are
the cluster's to stop.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import yaml
from hydra.experimental.callback import Callback

from jaxrl.files import json_text, stopped_resumably
from jaxrl.sinks.console import echo
from jaxrl.sweeps import RETURN

__all__ = ["SIGNALLED", "STOPPED_JOBS", "MultirunSummary", "collect", "flat_config", "job_dir"]

SIGNALLED: list[signal.Signals] = []
"""The signal this process, a launcher waiting on jobs of its own machine, passed on to them."""
STOPPED_JOBS: list[str] = []
"""The folders of this multirun's jobs that stopped resumably in processes of their own (the CLI
then exits with status 75; in Hydra's basic launcher a stopped job ends the process itself)."""


def job_dir() -> Path | None:
    """This Hydra multirun job's own folder, or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().runtime.output_dir)


def flat_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"algo.lr": 3e-4, ...} from a nested config (an empty dict is a value: {"sweep": {}})."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in flat_config(sub, f"{prefix}.{key}" if prefix else str(key)).items()}


def collect(sweep_dir: Path) -> dict[str, Any]:
    """{"jobs": [...]} for the run folders `<sweep_dir>/<n>`, in job order: each
    job's folder, the settings that differ between jobs (from their
    config.yaml; not run_dir or resume), and its summary.json (None for a job that wrote none)."""
    folders = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    configs = []
    for folder in folders:
        path = folder / "config.yaml"
        configs.append(flat_config(yaml.safe_load(path.read_text())) if path.exists() else {})
    # compared among the jobs that wrote a config: one that failed before would make every key differ;
    # a key some configs lack (clip_eps in an A2C job of -m algo=ppo,a2c) is their algorithm's or env's
    # own, not a setting the jobs differ in: listed, it filled every job's line with None
    written = [c for c in configs if c]
    keys = sorted({k for c in written for k in c if all(k in other for other in written)})
    # how a job was started, not what it trained: a resumed job's config.yaml says resume: null, a first one auto
    differ = [k for k in keys if k not in ("run_dir", "resume") and len({json.dumps(c[k], sort_keys=True) for c in written}) > 1]
    jobs = []
    for folder, config in zip(folders, configs):
        path = folder / "summary.json"
        jobs.append(
            {
                "job": int(folder.name),
                "run_dir": str(folder),
                "settings": {k: config.get(k) for k in differ},
                "summary": json.loads(path.read_text()) if path.exists() else None,
            }
        )
    return {"jobs": jobs}


def _line(job: dict[str, Any]) -> str:
    summary = job["summary"] or {}
    # summary.json stores a NaN return as null: a diverged member makes the job's mean nan
    returns = [math.nan if r is None else r for r in summary.get("final", {}).get(RETURN) or []]
    mean = f"{sum(returns) / len(returns):.2f}" if returns else "-"
    settings = "".join(f", {k}={v}" for k, v in job["settings"].items())
    return f"  job {job['job']}: {summary.get('status', 'no summary')}, {RETURN} {mean}{settings}"


class MultirunSummary(Callback):
    """Writes `<sweep dir>/summary.json` once every job of a multirun has ended;
    while jobs run in processes of their own, takes the launcher's signals."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Takes SIGINT and SIGTERM while the launcher waits on jobs in processes of their own:
        submitit_local's are passed on (`_stop_local_jobs`), other launchers' left (`_leave_jobs`)."""
        SIGNALLED.clear()
        STOPPED_JOBS.clear()
        launcher = config.hydra.launcher._target_
        if launcher.endswith(".BasicLauncher") or threading.current_thread() is not threading.main_thread():
            return  # the basic launcher's jobs run in this process, which stops them itself
        if launcher.endswith("submitit_launcher.LocalLauncher"):
            handler = _stop_local_jobs
        else:
            # a Ray cluster that the launcher starts in this process ends with it, and its jobs with it
            local_ray = "ray" in config.hydra.launcher and not config.hydra.launcher.ray.get("init", {}).get("address")
            handler = functools.partial(_leave_jobs, local_ray)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        result = collect(sweep_dir)
        (sweep_dir / "summary.json").write_text(json_text(result))
        echo(f"multirun: {len(result['jobs'])} job(s), summary in {sweep_dir / 'summary.json'}")
        for job in result["jobs"]:
            echo(_line(job))
        if not config.hydra.launcher._target_.endswith(".BasicLauncher"):
            STOPPED_JOBS.extend(job["run_dir"] for job in result["jobs"] if stopped_resumably(job["summary"]))


def _stop_local_jobs(signum: int, frame: Any) -> None:
    """SIGINT or SIGTERM: SIGTERM to each job, through the controller process that submitit_local
    starts for it (a child of this one), which passes SIGTERM on. After a first signal the launcher
    goes on waiting while the jobs checkpoint and stop; a second one ends them at once (their own
    second SIGTERM) and this process with them."""
    for child in psutil.Process().children():
        try:
            if "submitit.local._local" in " ".join(child.cmdline()):
                child.send_signal(signal.SIGTERM)
        except psutil.Error:  # ended meanwhile
            pass
    if SIGNALLED:
        os._exit(128 + signum)
    SIGNALLED.append(signal.Signals(signum))
    print(f"{signal.Signals(signum).name} received: each job checkpoints after its chunk and stops", file=sys.stderr,
          flush=True)


def _leave_jobs(local_ray: bool, signum: int, frame: Any) -> None:
    """SIGINT or SIGTERM to a launcher whose jobs run elsewhere (submitit_slurm, Ray): it stops
    waiting on them, with one line and the status of that signal."""
    name = signal.Signals(signum).name
    if local_ray:
        fate = "the local Ray cluster ends with this process, and its jobs with it, each at its last checkpoint"
    else:
        fate = "the jobs are the cluster's, and go on (stop them with its tools: scancel, ray job stop)"
    print(f"interrupted by {name}: {fate}; the same command with resume=auto and a fixed hydra.sweep.dir goes on "
          "with them", file=sys.stderr, flush=True)
    sys.exit(128 + signum)
