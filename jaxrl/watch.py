"""`python -m jaxrl.watch`: alerts when a training run goes silent.

Runs on another machine than the trainers. It follows run folders on shared
storage (their heartbeat.json and summary.json) and/or serves an HTTP
endpoint that trainers post their heartbeats to (`alerts.watch_url`). When an
unfinished run's newest heartbeat is older than the run's timeout
(`alerts.timeout_s`, or --timeout), it alerts through the same channels as
the trainer (console, apprise URLs, env:NAME, config:PATH); when the run
comes back, it alerts again. What it has alerted, and the last heartbeat
each run posted, are kept in a state file, so a restarted watcher neither
repeats an alert nor forgets a silent run, even one that died while the
watcher was down.

    python -m jaxrl.watch runs/ --channel env:JAXRL_ALERT_URL
    python -m jaxrl.watch --listen 0.0.0.0:8765 --channel 'json://hooks.example/x'
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jaxrl.alerts import HEARTBEAT_FILE, Alert, ConsoleChannel, Dispatcher, check_channel, make_channels, write_json
from jaxrl.errors import ConfigError, last_line
from jaxrl.files import WATCH_STATE_FILE

__all__ = ["Watcher", "load_state", "main", "parse_listen"]



def _is_heartbeat(heartbeat: dict[str, Any]) -> bool:
    """Whether `heartbeat` has what `check` reads: a numeric time, and a numeric timeout_s if any."""
    number = (int, float)
    timeout = heartbeat.get("timeout_s")
    return (isinstance(heartbeat.get("time"), number) and not isinstance(heartbeat.get("time"), bool)
            and (timeout is None or (isinstance(timeout, number) and not isinstance(timeout, bool))))

class Watcher:
    """Follows runs' heartbeats and alerts on silence and on return.

    folders: run folders, or folders of run folders or of multiruns' folders, to scan.
    default_timeout_s: for a heartbeat without "timeout_s".
    forget_s: a run silent longer than this when first seen is ignored (an
        old run folder is not news).
    """

    def __init__(
        self,
        folders: list[Path],
        dispatcher: Dispatcher,
        state_file: Path,
        default_timeout_s: float = 600.0,
        forget_s: float = 86400.0,
    ):
        self.folders = folders
        self.dispatcher = dispatcher
        self.state_file = state_file
        self.default_timeout_s = default_timeout_s
        self.forget_s = forget_s
        self.started = time.time()
        self.lock = threading.Lock()
        self.runs, self.posted = load_state(state_file)
        # posted heartbeats read back from the state file, not yet posted again
        # since this start: their silence counts from this start at the earliest,
        # so a run that lives on has time to post before it is called silent
        self.restored = set(self.posted)
        self._dirty = False
        self._save_failed = False
        # folders found without a run, told once: a folder given one level too high
        # (or mistyped) would otherwise be watched in silence, alerting on nothing
        self._told_empty: set[Path] = set()
        self._following: set[str] = set()
        # each heartbeat file's last good reading: one caught half-written (a sync tool
        # copying it) keeps its previous reading, instead of leaving a stale post to count
        self._last_read: dict[Path, dict[str, Any]] = {}

    def receive(self, heartbeat: dict[str, Any]) -> None:
        """A heartbeat posted to the HTTP endpoint; ValueError for one that is not a trainer's."""
        if not isinstance(heartbeat.get("id"), str) or not _is_heartbeat(heartbeat):
            raise ValueError("a heartbeat needs an 'id', a 'time' and a numeric 'timeout_s' if any")
        with self.lock:
            self.posted[heartbeat["id"]] = heartbeat
            self.restored.discard(heartbeat["id"])
            self._dirty = True

    def _from_folders(self) -> dict[str, dict[str, Any]]:
        heartbeats, read = {}, {}
        for folder in self.folders:
            # a run folder, a folder of them, or of multiruns (<runs_root>/multirun-<time>/<job>/)
            files = [folder / HEARTBEAT_FILE] if (folder / HEARTBEAT_FILE).exists() else [
                *folder.glob(f"*/{HEARTBEAT_FILE}"), *folder.glob(f"*/*/{HEARTBEAT_FILE}")]
            if not files and folder not in self._told_empty:
                self._told_empty.add(folder)
                print(f"watch: no run in {folder} yet (no {HEARTBEAT_FILE} in it, its folders or theirs); "
                      "give the run folder, runs/ or a multirun's folder; runs that start there later are seen",
                      file=sys.stderr, flush=True)
            for path in files:
                try:
                    heartbeat = json.loads(path.read_text())
                except (OSError, ValueError):
                    heartbeat = self._last_read.get(path)  # being replaced or half-synced
                    if heartbeat is None:
                        continue
                if not isinstance(heartbeat, dict) or not _is_heartbeat(heartbeat):
                    continue  # not a trainer's heartbeat: the watcher must outlive any file it finds
                read[path] = heartbeat
                if (path.parent / "summary.json").exists() and heartbeat.get("state") == "running":
                    heartbeat = {**heartbeat, "state": "ended"}  # killed after its summary was written
                key = heartbeat.get("id", str(path.parent))
                # a copy of a run's folder (a backup) holds the run's id until it trains itself: the
                # newer heartbeat speaks for the run, or the copy's old one would make it look silent
                if key not in heartbeats or float(heartbeat.get("time", 0)) >= float(heartbeats[key].get("time", 0)):
                    heartbeats[key] = heartbeat
        self._last_read = read
        return heartbeats

    def check(self) -> None:
        """One round: reads every heartbeat, alerts on silence and return,
        saves the state when it changed."""
        folders = self._from_folders()
        now = time.time()
        with self.lock:
            # a posted heartbeat older than --forget is dropped: the state file does not grow forever
            for key in [k for k, beat in self.posted.items() if now - float(beat["time"]) > self.forget_s]:
                del self.posted[key]
                self.restored.discard(key)
                self._dirty = True
            # one read back from the state file is older than the run's own file, if there is one
            posted = {k: beat for k, beat in self.posted.items() if k not in self.restored or k not in folders}
            # the newer of a run's file and its post: posts that stopped getting through (a proxy down)
            # while the run goes on writing its file do not make it silent, nor a stale post outlive its end
            heartbeats = {**posted, **{k: beat for k, beat in folders.items()
                                       if k not in posted or float(beat["time"]) >= float(posted[k]["time"])}}
            restored = set(self.restored)
        for key, heartbeat in heartbeats.items():
            run = self.runs.get(key)
            last = float(heartbeat.get("time", 0))
            silent_s = now - last
            judged_s = now - max(last, self.started) if key in restored else silent_s
            timeout = float(heartbeat.get("timeout_s") or self.default_timeout_s)
            # a run stopped by SIGTERM (a preemption, a requeue) is not over: silent too long, it was not resumed
            awaits = heartbeat.get("state") != "running" and bool(heartbeat.get("awaits_resume"))
            ended = heartbeat.get("state") != "running" and not awaits
            if run is None:
                if silent_s > self.forget_s:
                    continue
                run = self.runs[key] = {"silent": False, "ended": False}
                self._dirty = True
            name = heartbeat.get("run") or key
            if not ended and key not in self._following:  # says what is watched: a run missing here is not
                self._following.add(key)
                state = "silent" if run["silent"] else heartbeat.get("state")  # a restarted watcher knows
                print(f"watch: following {name} ({heartbeat.get('run_dir', key)}, {state})", file=sys.stderr, flush=True)
            if not run["silent"] and not ended and judged_s > timeout:
                where = (f"run {name} on {heartbeat.get('host', '?')} (pid {heartbeat.get('pid', '?')}, "
                         f"run folder {heartbeat.get('run_dir', '?')})")
                at = f"env step {heartbeat.get('step', 0)} of {heartbeat.get('total_steps', '?')}"
                if awaits:
                    self._send("error", f"{name} was not resumed", f"{where}: stopped by SIGTERM at {at} {silent_s:.0f} s "
                               f"ago (timeout {timeout:g} s), and no session has resumed it since: requeue it, or "
                               "resume it with resume=<run folder>")
                else:
                    self._send("error", f"{name} went silent", f"{where}: no heartbeat for {silent_s:.0f} s (timeout "
                               f"{timeout:g} s), last at {at}; the machine or the process may be gone")
                run["silent"], self._dirty = True, True
            elif run["silent"] and silent_s <= timeout:
                self._send("info", f"{name} is back", f"run {name} on {heartbeat.get('host', '?')} (run folder "
                           f"{heartbeat.get('run_dir', '?')}): heartbeats again, state {heartbeat.get('state')}, "
                           f"env step {heartbeat.get('step', 0)}")
                run["silent"], self._dirty = False, True
            if ended != run["ended"]:
                run["ended"], self._dirty = ended, True
        if self._dirty:
            self.save()

    def save(self) -> None:
        """Writes the state file (what was alerted, the last posted heartbeats).
        A failure is told once on stderr and retried next round: alerts go on."""
        with self.lock:
            data = {"runs": self.runs, "posted": dict(self.posted)}
            self._dirty = False
        try:
            write_json(self.state_file, data)
        except OSError as err:
            self._dirty = True
            if not self._save_failed:
                print(f"watch: cannot write the state file {self.state_file} ({last_line(err)}); still watching, "
                      "but a restarted watcher would not know what this one saw; retrying each round, "
                      "not reported again while it fails", file=sys.stderr, flush=True)
            self._save_failed = True
        else:
            self._save_failed = False

    def _send(self, level: str, title: str, text: str) -> None:
        if not any(isinstance(channel, ConsoleChannel) for channel in self.dispatcher.channels):
            # the console channel prints the alert itself; without it, the console still hears of it
            print(f"watch: {title}", file=sys.stderr, flush=True)
        self.dispatcher.send(Alert("silent run", level, title[:63], text))


def load_state(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """A state file's runs (what was alerted) and last posted heartbeats;
    both empty when there is no file. A state file from before the posted
    heartbeats were kept has none. ConfigError for a file that is not one."""
    if not path.exists():
        return {}, {}
    bad = f"the state file {str(path)!r} is not a jaxrl.watch state file"
    fix = "delete it or pass another --state"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # IsADirectoryError, a permission, UnicodeDecodeError, JSONDecodeError
        raise ConfigError(f"{bad} ({last_line(err)}); {fix}") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    posted = data.get("posted", {}) if isinstance(data, dict) else None
    if not isinstance(runs, dict) or not isinstance(posted, dict) or not all(isinstance(r, dict) for r in runs.values()):
        raise ConfigError(f"{bad} (no 'runs' object); {fix}")
    for run in runs.values():
        run["silent"], run["ended"] = bool(run.get("silent")), bool(run.get("ended"))
    posted = {k: beat for k, beat in posted.items() if isinstance(beat, dict) and _is_heartbeat(beat)}
    return runs, posted


def parse_listen(value: str) -> tuple[str, int]:
    """--listen's HOST:PORT as (host, port); an empty host is 0.0.0.0 (every
    interface). ConfigError naming the value when it is not HOST:PORT with a
    port 0-65535."""
    host, colon, port = value.rpartition(":")
    if not colon or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ConfigError(f"--listen {value!r} is not HOST:PORT with a port 0-65535 (e.g. 0.0.0.0:8765)")
    return host or "0.0.0.0", int(port)


def _serve(watcher: Watcher, value: str) -> ThreadingHTTPServer:
    host, port = parse_listen(value)
    try:
        return ThreadingHTTPServer((host, port), _handler(watcher))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(f"--listen {value!r}: port {port} is in use on {host}; choose another port") from None
        raise ConfigError(f"--listen {value!r}: cannot listen on {host}:{port} ({last_line(err)}); "
                          "give HOST:PORT with a host of this machine and a port 0-65535") from None


def _check_folders(folders: list[Path]) -> None:
    for folder in folders:
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise ConfigError(f"the folder to follow {str(folder)!r} {what}")


def _handler(watcher: Watcher) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """POST a heartbeat (JSON) to any path."""

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            try:
                length = int(self.headers.get("Content-Length", 0))
                watcher.receive(json.loads(self.rfile.read(length)))
            except (ValueError, TypeError, AttributeError) as err:
                self.send_error(400, str(err))
                return
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: a heartbeat every few seconds per run would flood the console."""

    return Handler


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jaxrl.watch",
        description="Alert when a training run goes silent (a dead machine or process), and when it comes back.",
    )
    parser.add_argument("folders", nargs="*", type=Path, help="run folders, or folders of run folders (e.g. runs/)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="serve an endpoint trainers post heartbeats to (alerts.watch_url)")
    parser.add_argument("--channel", action="append", default=[], help="console, an apprise URL, env:NAME or config:PATH (repeatable; default console)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds of silence for a heartbeat that gives no timeout_s (default: %(default)g)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between checks (default: %(default)g)")
    parser.add_argument("--state", type=Path, help=f"state file (default: {WATCH_STATE_FILE} in the first folder, or the working directory)")
    parser.add_argument("--forget", type=float, default=86400.0, help="ignore runs first seen silent for longer than this, in seconds (default: %(default)g, a day)")
    args = parser.parse_args(argv)
    if not args.folders and not args.listen:
        parser.error("give run folders to follow, --listen HOST:PORT, or both")
    # --interval 0 or less spun a core re-reading every heartbeat; --forget 0 or less
    # ignored every run, alerting on nothing, unsaid
    for flag, value in [("--interval", args.interval), ("--timeout", args.timeout), ("--forget", args.forget)]:
        if not value > 0:
            parser.error(f"{flag} must be a positive number of seconds, got {value:g}")
    return args


def main(argv: list[str] | None = None) -> None:
    """`python -m jaxrl.watch [FOLDER ...] [--listen HOST:PORT] [--channel URL ...]`."""
    args = _parse(argv)
    channels = args.channel or ["console"]
    try:
        for i, spec in enumerate(channels):
            check_channel(f"--channel #{i}", spec, wandb_ok=False)  # #i: as alerts name the channel
        dispatcher = Dispatcher(make_channels(channels))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    state = args.state or ((args.folders[0] if args.folders else Path(".")) / WATCH_STATE_FILE)
    try:
        _check_folders(args.folders)
        if args.listen:
            parse_listen(args.listen)
        try:  # written now: a state file that cannot be written is told now, not at the first alert
            if state.is_dir():
                raise IsADirectoryError(errno.EISDIR, "it is a folder; give a file's path")
            if not state.parent.is_dir():
                what = "is not a folder" if state.parent.exists() else "does not exist"
                raise FileNotFoundError(errno.ENOENT, f"its folder {str(state.parent)!r} {what}")
            watcher = Watcher(args.folders, dispatcher, state, args.timeout, args.forget)
            write_json(state, {"runs": watcher.runs, "posted": watcher.posted})
        except OSError as err:
            raise ConfigError(f"cannot write the state file {str(state)!r} ({err.strerror or last_line(err)}); "
                              "pass --state with a path in a folder you can write to") from None
        server = _serve(watcher, args.listen) if args.listen else None
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if server is not None:
        threading.Thread(target=server.serve_forever, name="jaxrl-watch-http", daemon=True).start()
        host, port = server.server_address[:2]
        print(f"watch: listening on {host}:{port}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"watch: following {', '.join(map(str, args.folders)) or 'posted heartbeats'}; state in {state}", file=sys.stderr, flush=True)
    while not stop.is_set():
        watcher.check()
        stop.wait(args.interval)
    watcher.save()  # the heartbeats posted since the last round
    dispatcher.close(10.0)


if __name__ == "__main__":
    main()
