"""`python -m jaxrl.watch`: alerts when a training run goes silent.

Runs on another machine than the trainers. It follows run folders on shared
storage (their heartbeat.json and summary.json) and/or serves an HTTP
endpoint that trainers post their heartbeats to (`alerts.watch_url`). When an
unfinished run's newest heartbeat is older than the run's timeout
(`alerts.timeout_s`, or --timeout), it alerts through the same channels as
the trainer (console, apprise URLs, env:NAME, config:PATH); when the run
comes back, it alerts again. What it has alerted is kept in a state file, so
a restarted watcher neither repeats an alert nor forgets a silent run.

    python -m jaxrl.watch runs/ --channel env:JAXRL_ALERT_URL
    python -m jaxrl.watch --listen 0.0.0.0:8765 --channel 'json://hooks.example/x'
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jaxrl.alerts import HEARTBEAT_FILE, Alert, Dispatcher, check_channel, make_channels, write_json
from jaxrl.errors import ConfigError

__all__ = ["Watcher", "main"]


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
        self.posted: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.runs: dict[str, dict[str, Any]] = {}
        if state_file.exists():
            self.runs = json.loads(state_file.read_text()).get("runs", {})

    def receive(self, heartbeat: dict[str, Any]) -> None:
        """A heartbeat posted to the HTTP endpoint."""
        if not isinstance(heartbeat.get("id"), str) or not isinstance(heartbeat.get("time"), (int, float)):
            raise ValueError("a heartbeat needs an 'id' and a 'time'")
        with self.lock:
            self.posted[heartbeat["id"]] = heartbeat

    def _from_folders(self) -> dict[str, dict[str, Any]]:
        heartbeats = {}
        for folder in self.folders:
            # a run folder, a folder of them, or of multiruns (<runs_root>/multirun-<time>/<job>/)
            files = [folder / HEARTBEAT_FILE] if (folder / HEARTBEAT_FILE).exists() else [
                *folder.glob(f"*/{HEARTBEAT_FILE}"), *folder.glob(f"*/*/{HEARTBEAT_FILE}")]
            for path in files:
                try:
                    heartbeat = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue  # a file being replaced or half-synced: next round
                if (path.parent / "summary.json").exists() and heartbeat.get("state") == "running":
                    heartbeat["state"] = "ended"  # killed after its summary was written
                heartbeats[heartbeat.get("id", str(path.parent))] = heartbeat
        return heartbeats

    def check(self) -> None:
        """One round: reads every heartbeat, alerts on silence and return,
        saves the state when it changed."""
        with self.lock:
            heartbeats = {**self._from_folders(), **self.posted}
        now = time.time()
        changed = False
        for key, heartbeat in heartbeats.items():
            run = self.runs.get(key)
            silent_s = now - float(heartbeat.get("time", 0))
            timeout = float(heartbeat.get("timeout_s") or self.default_timeout_s)
            ended = heartbeat.get("state") != "running"
            if run is None:
                if silent_s > self.forget_s:
                    continue
                run = self.runs[key] = {"silent": False, "ended": False}
                changed = True
            name = heartbeat.get("run") or key
            if not run["silent"] and not ended and silent_s > timeout:
                self._send(
                    "error",
                    f"{name} went silent",
                    f"run {name} on {heartbeat.get('host', '?')} (pid {heartbeat.get('pid', '?')}): no heartbeat for "
                    f"{silent_s:.0f} s (timeout {timeout:g} s), last at env step {heartbeat.get('step', 0)} of "
                    f"{heartbeat.get('total_steps', '?')}; the machine or the process may be gone",
                )
                run["silent"], changed = True, True
            elif run["silent"] and silent_s <= timeout:
                self._send("info", f"{name} is back", f"run {name}: heartbeats again, state {heartbeat.get('state')}, env step {heartbeat.get('step', 0)}")
                run["silent"], changed = False, True
            if ended != run["ended"]:
                run["ended"], changed = ended, True
        if changed:
            write_json(self.state_file, {"runs": self.runs})

    def _send(self, level: str, title: str, text: str) -> None:
        print(f"watch: {title}", file=sys.stderr, flush=True)
        self.dispatcher.send(Alert("silent run", level, title[:63], text))


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
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds of silence for a heartbeat that gives no timeout_s")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between checks")
    parser.add_argument("--state", type=Path, help="state file (default: .jaxrl-watch.json in the first folder, or the working directory)")
    parser.add_argument("--forget", type=float, default=86400.0, help="ignore runs first seen silent for longer than this (s)")
    args = parser.parse_args(argv)
    if not args.folders and not args.listen:
        parser.error("give run folders to follow, --listen HOST:PORT, or both")
    return args


def main(argv: list[str] | None = None) -> None:
    """`python -m jaxrl.watch [FOLDER ...] [--listen HOST:PORT] [--channel URL ...]`."""
    args = _parse(argv)
    channels = args.channel or ["console"]
    try:
        for i, spec in enumerate(channels):
            check_channel(f"--channel {i + 1}", spec, wandb_ok=False)
        dispatcher = Dispatcher(make_channels(channels))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    state = args.state or ((args.folders[0] if args.folders else Path(".")) / ".jaxrl-watch.json")
    watcher = Watcher(args.folders, dispatcher, state, args.timeout, args.forget)
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), _handler(watcher))
        threading.Thread(target=server.serve_forever, name="jaxrl-watch-http", daemon=True).start()
        print(f"watch: listening on {host or '0.0.0.0'}:{server.server_port}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"watch: following {', '.join(map(str, args.folders)) or 'posted heartbeats'}; state in {state}", file=sys.stderr, flush=True)
    while not stop.is_set():
        watcher.check()
        stop.wait(args.interval)
    dispatcher.close(10.0)


if __name__ == "__main__":
    main()
