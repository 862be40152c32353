"""`python -m jaxrl.watch` as a user runs it: real processes, heartbeats
POSTed by hand over real HTTP, alerts caught by a real HTTP server."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def titles(server: HTTPServer) -> list[str]:
    """The titles of the alerts POSTed to the json:// channel."""
    return [json.loads(request.get_data())["title"] for request, _ in server.log if request.path == "/alert"]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jaxrl.watch", "--interval", "0.3", *args], stderr=subprocess.PIPE, text=True
    )


def stop(watcher: subprocess.Popen) -> str:
    """SIGTERM, as a service manager stops it; its stderr."""
    watcher.send_signal(signal.SIGTERM)
    _, stderr = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, stderr
    return stderr


def post(port: int, run: str, timeout_s: float, age_s: float = 0.0, **fields) -> None:
    """POSTs a heartbeat of `run` as alerts.watch_url does, last alive `age_s` ago (`fields` replaced)."""
    deadline = time.monotonic() + 30
    while True:  # the watcher may still be starting
        request = urllib.request.Request(f"http://127.0.0.1:{port}/heartbeat",
                                         json.dumps({**beat(run, timeout_s, age_s), **fields}).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError:
            assert time.monotonic() < deadline, "the watcher never listened"
            time.sleep(0.1)


def beat(run: str, timeout_s: float, age_s: float = 0.0) -> dict:
    """A trainer's heartbeat, as alerts.watch_url receives it."""
    return {"id": f"node7:/runs/{run}", "run": run, "state": "running", "time": time.time() - age_s,
            "timeout_s": timeout_s, "step": 4096, "total_steps": 16384, "host": "node7", "pid": 4242}


def refused(*args: str, cwd: Path | None = None) -> str:
    """Runs the watcher, which must refuse to start: exit 2, one 'error: ' line; that line."""
    done = subprocess.run([sys.executable, "-m", "jaxrl.watch", *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


@pytest.fixture
def alerts(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/alert", method="POST").respond_with_data("ok")
    return httpserver


def test_a_run_that_dies_while_the_watcher_is_down_is_alerted_once_after_restart(tmp_path, alerts):
    state, port = tmp_path / "state.json", free_port()
    args = ["--listen", f"127.0.0.1:{port}", "--state", str(state), "--channel", f"json://127.0.0.1:{alerts.port}/alert"]
    watcher = start(*args)
    try:
        post(port, "died", timeout_s=5)  # 5 s: a loaded machine's stall before the stop is no silence yet
        wait_until(lambda: "node7:/runs/died" in json.loads(state.read_text())["runs"], 10, "the run in the state")
        stop(watcher)  # the watcher goes down; meanwhile the trainer is killed (it posts no more)
        assert titles(alerts) == []
        watcher = start(*args)
        wait_until(lambda: titles(alerts), 20, "the silent-run alert after the restart")
        assert titles(alerts) == ["died went silent"]
        stop(watcher)
        watcher = start(*args)  # restarted again: that alert was sent, not again
        time.sleep(3)
        assert titles(alerts) == ["died went silent"]
        post(port, "died", timeout_s=2)
        wait_until(lambda: len(titles(alerts)) == 2, 10, "the back-again alert")
        assert titles(alerts)[1] == "died is back"
        # no console channel: the console still hears of each alert
        assert "watch: died is back" in stop(watcher)
    finally:
        watcher.kill()
        watcher.wait()


def test_with_the_console_channel_an_alert_is_printed_once(tmp_path, alerts):
    port = free_port()
    watcher = start("--listen", f"127.0.0.1:{port}", "--state", str(tmp_path / "state.json"),
                    "--channel", "console", "--channel", f"json://127.0.0.1:{alerts.port}/alert")
    try:
        post(port, "quiet", timeout_s=1, age_s=5)
        wait_until(lambda: titles(alerts) == ["quiet went silent"], 20, "the silent-run alert")
        said = stop(watcher)
        assert said.count("quiet went silent") == 1 and "ALERT [error] quiet went silent" in said, said
    finally:
        watcher.kill()
        watcher.wait()


def test_a_run_stopped_by_sigterm_that_no_session_resumes_is_alerted_and_one_stopped_by_hand_is_not(tmp_path, alerts):
    port = free_port()
    watcher = start("--listen", f"127.0.0.1:{port}", "--state", str(tmp_path / "state.json"),
                    "--channel", f"json://127.0.0.1:{alerts.port}/alert")
    try:
        # the trainers' last heartbeats: a spot instance's SIGTERM, and a Ctrl-C
        post(port, "preempted", timeout_s=2, state="stopped", awaits_resume=True)
        post(port, "by-hand", timeout_s=2, state="stopped", awaits_resume=False)
        wait_until(lambda: titles(alerts), 15, "the not-resumed alert")
        time.sleep(3)  # past the other's timeout too
        assert titles(alerts) == ["preempted was not resumed"]
        text = json.loads(alerts.log[0][0].get_data())["message"]
        assert "stopped by SIGTERM at env step 4096 of 16384" in text and "resume=<run folder>" in text, text
        post(port, "preempted", timeout_s=2)  # a requeued session resumes it
        wait_until(lambda: len(titles(alerts)) == 2, 10, "the back-again alert")
        assert titles(alerts)[1] == "preempted is back"
    finally:
        watcher.kill()
        watcher.wait()


def test_a_restarted_watcher_gives_a_living_run_time_to_post_and_reads_old_state_files(tmp_path, alerts):
    state, port = tmp_path / "state.json", free_port()
    # a state file from before posted heartbeats were kept, and one with a heartbeat
    # posted 30 s ago by a run that lived on while the watcher was down
    state.write_text(json.dumps({"runs": {"old": {"silent": True, "ended": False}}}))
    assert refused("--listen", "127.0.0.1:notaport", "--state", str(state))  # read, not rewritten
    state.write_text(json.dumps({"runs": {"node7:/runs/alive": {"silent": False, "ended": False}},
                                 "posted": {"node7:/runs/alive": beat("alive", timeout_s=5, age_s=30)}}))
    watcher = start("--listen", f"127.0.0.1:{port}", "--state", str(state), "--channel", f"json://127.0.0.1:{alerts.port}/alert")
    try:
        post(port, "alive", timeout_s=5)  # its next heartbeat, within the timeout of the restart
        time.sleep(1.5)
        post(port, "alive", timeout_s=5)
        time.sleep(1)
        assert titles(alerts) == []
        assert json.loads(state.read_text())["runs"]["node7:/runs/alive"] == {"silent": False, "ended": False}
    finally:
        watcher.kill()
        watcher.wait()


def test_a_missing_folder_or_unwritable_state_is_refused_at_start(tmp_path):
    missing = tmp_path / "does_not_exist"
    assert str(missing) in refused(str(missing))  # without --listen it used to watch nothing, forever
    assert str(missing) in refused(str(missing), "--listen", f"127.0.0.1:{free_port()}")
    assert str(missing / "state.json") in refused("--listen", f"127.0.0.1:{free_port()}", "--state", str(missing / "state.json"))
    (tmp_path / "a_file").write_text("")
    assert "is not a folder" in refused("--listen", ":0", "--state", str(tmp_path / "a_file" / "state.json"))
    assert not missing.exists()


def test_a_state_file_that_cannot_be_written_later_is_told_once_and_watching_goes_on(tmp_path, alerts):
    (tmp_path / "gone").mkdir()
    state, port = tmp_path / "gone" / "state.json", free_port()
    watcher = start("--listen", f"127.0.0.1:{port}", "--state", str(state), "--channel", f"json://127.0.0.1:{alerts.port}/alert")
    try:
        wait_until(state.exists, 20, "the state file")
        shutil.rmtree(tmp_path / "gone")  # e.g. the shared storage went away
        post(port, "first", timeout_s=1)
        time.sleep(1)  # a few rounds, each failing to save
        post(port, "second", timeout_s=1, age_s=10)
        wait_until(lambda: sorted(titles(alerts)) == ["first went silent", "second went silent"], 10, "both alerts")
        assert watcher.poll() is None
        stderr = stop(watcher)
        assert stderr.count(f"cannot write the state file {state}") == 1, stderr
        assert "Traceback" not in stderr
    finally:
        watcher.kill()
        watcher.wait()


@pytest.mark.parametrize("listen", ["127.0.0.1:notaport", "nohost", "127.0.0.1:65536", "127.0.0.1:-1"])
def test_a_listen_value_that_is_not_host_port_is_one_line(tmp_path, listen):
    said = refused("--listen", listen, "--state", str(tmp_path / "state.json"))
    assert repr(listen) in said and "HOST:PORT" in said and "0-65535" in said


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = refused("--listen", f"127.0.0.1:{port}", "--state", str(tmp_path / "state.json"))
    assert f"127.0.0.1:{port}" in said and "in use" in said


@pytest.mark.parametrize("content", ["", '{"runs": {"a": {"sil', "[]"])
def test_a_corrupt_state_file_is_one_line_and_kept(tmp_path, content):
    state = tmp_path / ".jaxrl-watch.json"
    state.write_text(content)
    said = refused(str(tmp_path), "--listen", "127.0.0.1:0")  # the default state file, in the folder
    assert str(state) in said and "delete it or pass another --state" in said
    assert state.read_text() == content  # not overwritten: it may be someone's file


def test_a_heartbeat_file_that_is_not_a_trainers_is_skipped_and_the_others_are_watched(tmp_path, alerts):
    odd_timeout = json.dumps({**beat("odd_timeout", 1, age_s=10), "timeout_s": "ten"})  # crashed the watcher's check
    for name, content in [("odd", '{"time": "yesterday"}'), ("list", "[1, 2]"), ("odd_timeout", odd_timeout),
                          ("real", json.dumps(beat("real", 1, age_s=10)))]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "heartbeat.json").write_text(content)
    watcher = start(str(tmp_path), "--channel", f"json://127.0.0.1:{alerts.port}/alert")
    try:
        wait_until(lambda: titles(alerts) == ["real went silent"], 20, "the real run's alert")
        assert watcher.poll() is None
        assert "Traceback" not in stop(watcher)
    finally:
        watcher.kill()
        watcher.wait()



def test_a_copy_of_a_run_folder_does_not_make_the_run_look_silent(tmp_path, alerts):
    # a backup taken a minute ago holds the run's id, and its heartbeat of then, until it trains itself
    live = beat("live", timeout_s=2)
    for name in ("live", "live-backup"):
        (tmp_path / name).mkdir()
    (tmp_path / "live-backup" / "heartbeat.json").write_text(json.dumps({**live, "time": time.time() - 60}))
    watcher = start(str(tmp_path), "--channel", f"json://127.0.0.1:{alerts.port}/alert")
    try:
        for _ in range(20):  # the run beats on for 6 s, 3 of its timeouts
            (tmp_path / "live" / "heartbeat.json").write_text(json.dumps({**live, "time": time.time()}))
            time.sleep(0.3)
        assert titles(alerts) == []
    finally:
        watcher.kill()
        watcher.wait()


def test_a_run_whose_posts_stop_getting_through_but_whose_folder_is_fresh_is_not_silent(tmp_path, alerts):
    # watching the folder and listening: the newer of the two heartbeats counts, not always the posted one,
    # and a file caught half-written (a sync tool copying it) keeps its last reading, not the stale post
    port = free_port()
    run = tmp_path / "living"
    run.mkdir()
    (run / "heartbeat.json").write_text(json.dumps(beat("living", timeout_s=5)))
    watcher = start(str(tmp_path), "--listen", f"127.0.0.1:{port}", "--channel", f"json://127.0.0.1:{alerts.port}/alert")
    try:
        post(port, "living", timeout_s=5, age_s=60)  # its last post that got through, long ago
        end = time.monotonic() + 5
        while time.monotonic() < end:  # the run goes on writing its heartbeat file; the copy catches some half-way
            whole = json.dumps(beat("living", timeout_s=5))
            (run / "heartbeat.json").write_text(whole[: len(whole) // 2])
            time.sleep(0.1)  # briefly: a watcher that saw only half files for 5 s would rightly alert
            (run / "heartbeat.json").write_text(whole)
            time.sleep(0.3)
        assert titles(alerts) == []
        assert "Traceback" not in stop(watcher)
    finally:
        watcher.kill()
        watcher.wait()


def test_a_folder_without_runs_is_told_and_each_run_followed_is_named(tmp_path):
    # runs one level deeper than the watcher looks (a folder given too high): nothing would
    # ever alert, and the user would not know
    deep = tmp_path / "shared" / "project" / "runs" / "a"
    deep.mkdir(parents=True)
    (deep / "heartbeat.json").write_text(json.dumps({**beat("a", 600), "run_dir": str(deep)}))
    high, right = start(str(tmp_path / "shared"), "--state", str(tmp_path / "s1.json")), start(
        str(tmp_path / "shared" / "project" / "runs"), "--state", str(tmp_path / "s2.json"))
    try:
        # the state file is written at the start, then after a round that found a run
        s1, s2 = tmp_path / "s1.json", tmp_path / "s2.json"
        wait_until(lambda: s1.exists() and s2.exists() and "node7:/runs/a" in s2.read_text(), 60, "both watchers' first round")
        time.sleep(1)  # the first round of the watcher that finds nothing
        said_high, said_right = stop(high), stop(right)
    finally:
        for watcher in (high, right):
            watcher.kill()
            watcher.wait()
    assert f"watch: no run in {tmp_path / 'shared'} yet" in said_high and "following a " not in said_high, said_high
    assert f"watch: following a ({deep}, running)" in said_right and "no run in" not in said_right, said_right


@pytest.mark.parametrize(("channel", "said"), [("json://[::1/alert", "is not a URL (Invalid IPv6 URL)"),
                                               ("json://127.0.0.1:99999/alert", "has port 99999; a port is 1-65535")])
def test_a_malformed_channel_is_one_line(tmp_path, channel, said):
    line = refused("--listen", "127.0.0.1:0", "--channel", channel, "--state", str(tmp_path / "state.json"))
    assert line.startswith("error: --channel #0") and said in line, line


@pytest.mark.parametrize("flag", ["--interval", "--timeout", "--forget"])
def test_a_number_of_seconds_that_is_not_positive_is_refused(tmp_path, flag):
    # --interval 0 spun a core; --forget -1 ignored every run, so nothing was ever alerted
    done = subprocess.run([sys.executable, "-m", "jaxrl.watch", str(tmp_path), flag, "0", "--state", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and f"error: {flag} must be a positive number of seconds, got 0" in done.stderr, done.stderr


def test_a_run_folder_watched_before_its_run_starts_is_still_new_to_the_trainer(tmp_path):
    from jaxrl.config import ConfigError
    from jaxrl.outputs import check_run_dir

    run = tmp_path / "run"
    run.mkdir()
    watcher = start(str(run))  # its state file goes into the first folder it watches
    try:
        wait_until(lambda: any(run.iterdir()), 60, "the watcher's state file")
        stop(watcher)
    finally:
        watcher.kill()
        watcher.wait()
    # the spot loop's run_dir=<run> resume=auto starts the run there, and trains it to its end
    tiny = ["algo.num_envs=4", "algo.rollout_length=8", "algo.hidden=[16]", "algo.num_minibatches=4",
            "total_timesteps=256", "num_logs=1", "logger=none", "video.enabled=false", "seeds=1", "eval.episodes=1"]
    proc = subprocess.run([sys.executable, "-m", "jaxrl.train", *tiny, f"run_dir={run}", "resume=auto"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="already holds files"):
        check_run_dir(other)
