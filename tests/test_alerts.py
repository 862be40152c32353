"""Alerts end to end: real training runs, a real SMTP server (aiosmtpd) and
real HTTP servers on 127.0.0.1, apprise as the channel, real processes for
the exit status and for `jaxrl.watch`."""

from __future__ import annotations

import contextlib
import email
import io
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from apprise.plugins.email import NotifyEmail
from pytest_httpserver import HTTPServer
from werkzeug import Response

import jaxrl
from conftest import compose, run_cli
from jaxrl.alerts import _title, alert_hooks
from jaxrl.config import ConfigError, from_dict
from jaxrl.errors import RESUMABLE_EXIT, Stopped
from jaxrl.events import Hook
from jaxrl.sinks.base import RunInfo

TINY = ["logger=none", "total_timesteps=16384", "num_logs=4", "eval.every=1", "eval.episodes=2", "video.enabled=false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd handler: keeps every message it is sent."""

    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def posts(server: HTTPServer, path: str) -> list[dict]:
    """The JSON bodies POSTed to `path`."""
    return [json.loads(request.get_data()) for request, _ in server.log if request.path == path]


class Stall(Hook):
    """Holds the training loop after its second chunk: a step made to stall."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_chunk(self, event):
        if event.index == 1:
            time.sleep(self.seconds)


@pytest.fixture(scope="module")
def servers():
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    http = HTTPServer(host="127.0.0.1", port=0)
    http.expect_request("/hook", method="POST").respond_with_data("ok")
    http.expect_request("/broken", method="POST").respond_with_response(Response("down", status=500))
    http.expect_request("/ping/start").respond_with_data("OK")
    http.expect_request("/ping").respond_with_data("OK")
    http.start()
    yield inbox, smtp.port, http
    http.stop()
    smtp.stop()


@pytest.fixture(scope="module")
def alerted_run(servers, tmp_path_factory):
    """One short real run with every in-run rule kind and good and broken
    channels: (summary, run_dir, stderr, inbox, http server)."""
    from jaxrl.alerts import alert_hooks
    from jaxrl.runner import train
    from jaxrl.sinks import make_sinks

    inbox, smtp_port, http = servers
    run_dir = tmp_path_factory.mktemp("alerts") / "run"
    refused = free_port()  # nothing listens there
    mail = "mailto://127.0.0.1:{}?from=jaxrl@example.com&to=me@example.com"
    resolved = compose(
        *TINY,
        "seeds=2",
        f"run_dir={run_dir}",
        "alerts.interval_s=0.2",
        "alerts.flush_s=60",
        f"alerts.ping_url=http://127.0.0.1:{http.port}/ping",
        "alerts.rules=[{name: solved, metric: eval/return_mean, op: '>', value: -1000, scope: population},"
        " {name: rss, kind: system, metric: system/rss_gib, op: '>', value: 0.01},"
        " {name: stall, kind: no_progress, seconds: 12}, {name: done, kind: run, when: [finished]},"
        " {name: slow, metric: summary/sps, op: '<', value: 1e9},"
        " {name: typo, metric: eval/return_mea, op: '>', value: 0}, {name: sac, metric: loss/critic, op: '>', value: 0},"
        " {name: late, metric: summary/spss, op: '>', value: 0}]",
        f"alerts.channels=[console,'{mail.format(smtp_port)}','json://127.0.0.1:{http.port}/hook',"
        f"'{mail.format(refused)}','json://127.0.0.1:{http.port}/broken']",
    )
    run = from_dict(resolved)
    sinks = make_sinks(run)
    err = io.StringIO()
    # apprise spaces a mail channel's sends 5.5 s apart, to spare real servers; with two mail channels
    # this run's five alerts would take a minute to deliver, for nothing these tests assert
    with contextlib.redirect_stderr(err), pytest.MonkeyPatch.context() as patch:
        patch.setattr(NotifyEmail, "request_rate_per_sec", 0)
        summary = train(run, run_dir, sinks, resolved, hooks=[*alert_hooks(run, sinks), Stall(16.0)])
    return summary, run_dir, err.getvalue(), inbox, http


def test_threshold_alert_reaches_smtp_and_webhook_once(alerted_run):
    summary, _, _, inbox, http = alerted_run
    assert summary["status"] == "finished"
    subjects = [m["Subject"] for m in inbox.messages]
    # four evaluations stay above the line: one alert, not one per chunk
    assert sum("solved" in s for s in subjects) == 1, subjects
    hooks = [p for p in posts(http, "/hook") if p["title"].startswith("solved")]
    assert len(hooks) == 1
    assert "eval/return_mean" in hooks[0]["message"] and "population mean" in hooks[0]["message"]
    # one mail and one POST per alert: solved, rss, stall, done, slow
    assert len(inbox.messages) == 5 and len(posts(http, "/hook")) == 5, subjects


def test_an_alert_names_the_machine_and_the_run_folder(alerted_run):
    _, run_dir, _, inbox, http = alerted_run
    where = f"(run folder {socket.gethostname()}:{run_dir.resolve()})"
    assert all(where in p["message"] for p in posts(http, "/hook")), posts(http, "/hook")
    bodies = [part.get_payload(decode=True).decode() for m in inbox.messages for part in m.walk() if not part.is_multipart()]
    assert bodies and all(where in body for body in bodies), bodies


def test_a_rule_on_a_metric_the_run_does_not_log_is_reported_once(alerted_run):
    _, _, stderr, _, _ = alerted_run
    for rule, metric in [("typo", "eval/return_mea"), ("sac", "loss/critic"), ("late", "summary/spss")]:
        said = [line for line in stderr.splitlines() if f"rule {rule!r} watches {metric!r}, which this run does not log" in line]
        assert len(said) == 1, stderr
    # the logged metrics are listed, so the right name can be picked
    assert "eval/return_mean" in stderr and "summary/sps" in stderr
    assert "watches 'eval/return_mean'" not in stderr and "watches 'summary/sps'" not in stderr


def test_memory_rule_fires_once_and_stall_is_seen(alerted_run):
    _, _, _, _, http = alerted_run
    titles = [p["title"] for p in posts(http, "/hook")]
    # sampled every 0.2 s for the whole run, above the line all along
    assert sum(t.startswith("rss") for t in titles) == 1, titles
    stalls = [p for p in posts(http, "/hook") if p["title"].startswith("stall")]
    # 12 s without a chunk is the held step alone, even on a 2-core machine at load 9
    assert len(stalls) == 1 and "last at env step 8192" in stalls[0]["message"], stalls
    assert sum(t.startswith("run finished") for t in titles) == 1
    assert sum(t.startswith("slow") for t in titles) == 1  # a summary value, checked at the end


def test_broken_channels_leave_training_finished_and_are_logged_once(alerted_run):
    summary, run_dir, stderr, _, http = alerted_run
    assert summary["status"] == "finished" and len(summary["final"]["eval/return_mean"]) == 2
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    failures = [line for line in stderr.splitlines() if line.startswith("alerts: channel")]
    assert len(failures) == 2, stderr
    # named by place in alerts.channels, the URLs masked: the two webhooks share a host
    assert any("#3 mailto://" in line for line in failures) and any("#4 json://" in line for line in failures)
    assert not any("/broken" in line for line in failures)
    # the broken webhook was tried for every alert (five, each with its retries), reported once
    assert len(posts(http, "/broken")) == 5 * 3
    heartbeat = json.loads((run_dir / "heartbeat.json").read_text())
    assert heartbeat["state"] == "finished" and heartbeat["step"] == 16384


def test_dead_mans_switch_is_pinged_at_start_and_end(alerted_run):
    _, _, _, _, http = alerted_run
    pings = [request.path for request, _ in http.log if request.path.startswith("/ping")]
    # start, then an alive ping a minute after the last ping (the run is shorter), the finished end
    assert pings == ["/ping/start", "/ping"], pings


def test_a_long_run_name_is_shortened_in_alert_titles_which_stay_readable():
    run = "20261205-071537-ppo-mountaincar_continuous"
    assert _title("solved", run) == f"solved ({run})"
    title = _title("eval/return_mean >= 90 (member 1)", run)
    # W&B takes titles under 64 characters; the rule's own words are kept whole
    assert len(title) <= 63 and title == "eval/return_mean >= 90 (member 1) (20261205-071537-ppo-mounta…)"


def test_nan_stops_the_run_resumably_naming_member_and_step(tmp_path, httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    args = [
        *TINY,
        "seeds=2",
        f"run_dir={tmp_path / 'run'}",
        "alerts.test_nan=[1,1]",
        f"alerts.channels=[console,'json://127.0.0.1:{httpserver.port}/hook']",
        "checkpoint.every=1",
    ]
    result = run_cli(args, tmp_path)
    assert result.returncode == RESUMABLE_EXIT, result.stderr
    assert "member 1 (seed 1): NaN/inf in policy parameters" in result.stderr
    assert "between env steps 4096 and 8192" in result.stderr
    assert "stopping the run (its bad state is not saved: a resume goes on from env step 4096, its newest" in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["env_steps"] == 8192 and summary["bad_state"]
    nan_alerts = [p for p in posts(httpserver, "/hook") if p["title"].startswith("NaN/inf in member 1 at step 8192")]
    assert len(nan_alerts) == 1 and nan_alerts[0]["type"] == "failure"
    # the default rules also report the stop
    assert sum(p["title"].startswith("run stopped") for p in posts(httpserver, "/hook")) == 1
    # the NaN chunk was evaluated, but the policy file kept member 1's last finite parameters
    assert "the policy parameters of member(s) [1] are not finite at step 8192" in result.stderr
    saved = flax.serialization.msgpack_restore((tmp_path / "run" / "policy.msgpack").read_bytes())
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(saved))
    # a requeue loop's resume=auto would replay the same NaN: it stops for a person instead, at once
    again = run_cli([*args, "resume=auto"], tmp_path)
    assert again.returncode == 2 and "compiling" not in again.stderr, again.stderr[-3000:]
    assert f"{tmp_path / 'run'} stopped on a bad state (non-finite values: member 1" in again.stderr
    # no session began: it would have removed summary.json
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    # a person who wants it past the NaN says so, and the same requeue command goes on
    past = run_cli([*args, "resume=auto", "alerts.on_nonfinite=continue"], tmp_path)
    assert past.returncode == 0, past.stderr[-3000:]
    assert f"resuming {tmp_path / 'run'} at step 4096" in past.stderr

    def no_nan(constant):
        raise ValueError(f"summary.json holds {constant}, which strict JSON parsers reject")

    finished = json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=no_nan)
    # member 1 trained on from its NaN: its evaluation is null, as in metrics.jsonl
    assert finished["status"] == "finished" and finished["final"]["eval/return_mean"][1] is None


def test_nan_before_the_first_checkpoint_says_a_resume_starts_over_and_the_resume_says_so(tmp_path):
    args = [*TINY, "seeds=2", "run_dir=run", "alerts.test_nan=[0,1]", "alerts.channels=[console]"]
    result = run_cli(args, tmp_path)
    assert result.returncode == RESUMABLE_EXIT, result.stderr[-3000:]
    # nothing was saved before the first chunk went bad: "resumable" would promise what a resume cannot keep
    assert "no checkpoint (none was saved before the stop), so a resume starts over" in result.stderr, result.stderr
    assert "resumable" not in result.stderr and not (tmp_path / "run" / "checkpoints").exists()
    assert "stopping the run (its bad state is not saved, and no checkpoint was: a resume starts over)" in result.stderr
    past = run_cli([*args, "resume=auto", "alerts.on_nonfinite=continue"], tmp_path)
    assert past.returncode == 0, past.stderr[-3000:]
    assert "resuming run: it has no checkpoint, so training starts over from step 0" in past.stderr, past.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("alerts.rules=[{metric: eval/return_mean, op: '=>', value: 90}]", "alerts.rules[0].op='=>' is not one of"),
        ("alerts.rules=[{kind: loss, metric: x, value: 1}]", "alerts.rules[0].kind='loss' is not one of"),
        ("alerts.rules=[{metric: eval/return_mean}]", "alerts.rules[0]: a metric rule needs a value"),
        ("alerts.rules=[{metric: x, value: 1, every: 3}]", "unknown key(s) alerts.rules[0].every"),
        ("alerts.rules=[{kind: system, metric: system/gpu, op: '>', value: 1}]", "is not a system metric"),
        # a field the rule's kind never reads: value: 3 meant points: 3, or the rule another kind
        ("alerts.rules=[{kind: not_improved, metric: loss/value, op: '<', value: 3}]",
         "alerts.rules[0].value=3.0: a not_improved rule does not read value; its fields are metric, op, points, scope, cooldown_s"),
        ("alerts.rules=[{kind: run, when: [finished], metric: loss/value}]", "alerts.rules[0].metric='loss/value': a run rule"),
        ("alerts.rules=[{kind: no_progress, seconds: 60, scope: population}]", "a no_progress rule does not read scope"),
        ("alerts.rules=[{metric: x, value: 1, cooldown_s: -5}]", "alerts.rules[0].cooldown_s must be >= 0 (or null: again "
         "only after the condition cleared), got -5"),
        ("alerts.rules=[{kind: no_progress, seconds: 0}]", "alerts.rules[0].seconds must be positive, got 0"),
        ("alerts.rules=[{kind: not_improved, metric: x, op: '=='}]", "not_improved needs '>' or '>=' (higher is better), '<' or"),
        ("alerts.retries=-1", "alerts.retries must be >= 0, got -1"),
        ("alerts.flush_s=-2", "alerts.flush_s must be >= 0, got -2"),
        # kind left at its default (metric): not a mid-run "this run does not log it"
        ("alerts.rules=[{metric: system/memory_percent, op: '>', value: 90}]",
         "alerts.rules[0].metric='system/memory_percent' is a system metric, sampled by the monitor, not logged; give kind: system"),
        ("alerts.channels=[email]", "alerts.channels[0]='email' is not a channel"),
        ("alerts.channels=['nosuch://host/x']", "apprise does not accept 'nosuch://host/..."),
        ("alerts.channels=['mailtos://me:hunter2@example.com']", "holds a password; put the URL in an environment variable"),
        ("alerts.ping_url=https://me:hunter2@hc.example.com/ping", "alerts.ping_url holds a password"),
        # malformed URLs: refused before compiling, not a ValueError traceback nor a failure hours later
        ("alerts.channels=['json://[::1/hook']", "alerts.channels[0]='json://...' is not a URL (Invalid IPv6 URL)"),
        ("alerts.channels=['json://127.0.0.1:99999/hook']", "has port 99999; a port is 1-65535"),
        ("alerts.channels=['http://127.0.0.1:8080/hook']", "a JSON webhook is json://HOST/PATH"),
        ("alerts.ping_url='http://[::1/ping'", "alerts.ping_url='http://...' is not a URL (Invalid IPv6 URL)"),
        ("alerts.watch_url=http://127.0.0.1:99999/heartbeat", "alerts.watch_url='http://127.0.0.1/...' is not a URL (Port out of range"),
        ("alerts.ping_url=http://", "alerts.ping_url must be an http(s) URL with a host"),
        # a heartbeat every 5 s and a 4 s timeout: jaxrl.watch says silent, then back, every 5 s
        (["alerts.timeout_s=4", "alerts.interval_s=5"], "alerts.timeout_s=4 is too short for a heartbeat every alerts.interval_s=5 s"),
        ("alerts.watch_url=http://me:hunter2@watch.example.com/heartbeat", "alerts.watch_url holds a password"),
        (["logger=none", "alerts.channels=[console,wandb]"], "alerts channel wandb needs logger=wandb, got logger=none"),
    ],
)
def test_bad_alert_config_is_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        from_dict(compose(*([override] if isinstance(override, str) else override)))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_failing_apprise_channel_says_why_without_logging_through_the_root_logger():
    # wandb gives the root logger a handler; apprise's warning per attempt would reach the console
    # through it, on top of the dispatcher's one line
    from jaxrl.alerts import Alert, AppriseChannel

    seen = io.StringIO()
    handler = logging.StreamHandler(seen)
    logging.getLogger().addHandler(handler)
    try:
        reason = AppriseChannel(f"json://127.0.0.1:{free_port()}/hook").deliver(Alert("rule", "warn", "title", "text"))
    finally:
        logging.getLogger().removeHandler(handler)
    assert reason.startswith("A Connection error occurred sending JSON notification to 127.0.0.1: ")
    assert "Connection refused" in reason and "url: /hook" not in reason, reason
    assert seen.getvalue() == ""


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_refused_smtp_password_is_told_as_such():
    # apprise's own warning says "Connection error" whatever went wrong: the user would check
    # the network, not the password
    from aiosmtpd.smtp import AuthResult

    from jaxrl.alerts import Alert, AppriseChannel

    smtp = Controller(Inbox(), hostname="127.0.0.1", port=free_port(), auth_require_tls=False, auth_required=True,
                      authenticator=lambda *args: AuthResult(success=False, handled=False))
    smtp.start()
    try:
        channel = AppriseChannel(f"mailto://me:wrong@127.0.0.1:{smtp.port}?from=jaxrl@example.com&to=me@example.com&mode=insecure")
        reason = channel.deliver(Alert("rule", "warn", "title", "text"))
    finally:
        smtp.stop()
    assert "Authentication credentials invalid" in reason and "wrong" not in reason, reason


def test_a_channel_of_several_urls_sends_once_to_each_that_works(monkeypatch, httpserver):
    # the URLs of one env:NAME used to be one apprise target: a dead URL made every retry resend to the others
    from jaxrl.alerts import Alert, Dispatcher, make_channels

    httpserver.expect_request("/good", method="POST").respond_with_data("ok")
    dead = free_port()
    monkeypatch.setenv("JAXRL_TEST_HOOKS", f"json://127.0.0.1:{httpserver.port}/good,json://127.0.0.1:{dead}/dead")
    dispatcher = Dispatcher(make_channels(["env:JAXRL_TEST_HOOKS"]), retries=2, backoff_s=0.05)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        dispatcher.send(Alert("rule", "warn", "title", "text"))
        dispatcher.close(60)
    assert [p["title"] for p in posts(httpserver, "/good")] == ["title"]
    # the one report names the URL that failed, not the group
    failures = [line for line in err.getvalue().splitlines() if "failed" in line]
    assert len(failures) == 1 and f":{dead}" in failures[0] and "/good" not in failures[0], err.getvalue()



def test_a_channel_that_failed_once_still_retries_later_alerts_and_counts_what_it_lost(httpserver):
    # a webhook down for one alert's attempts used to get one try per later alert, lost without a word
    from jaxrl.alerts import Alert, Dispatcher, make_channels

    answers = iter([503, 503, 503, 503, 200, 503, 503, 503])
    httpserver.expect_request("/flaky", method="POST").respond_with_handler(
        lambda request: Response("", status=next(answers))
    )
    dispatcher = Dispatcher(make_channels([f"json://127.0.0.1:{httpserver.port}/flaky"]), retries=2, backoff_s=0.01)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        for title in ("first", "second", "third"):
            dispatcher.send(Alert("rule", "warn", title, "text"))
        dispatcher.close(60)
    # first: 3 attempts, lost; second: 503 then 200, delivered; third: 3 attempts, lost
    assert [p["title"] for p in posts(httpserver, "/flaky")] == ["first"] * 3 + ["second"] * 2 + ["third"] * 3
    lines = err.getvalue().splitlines()
    assert [line for line in lines if "failed" in line and "'first'" in line], err.getvalue()
    assert [line for line in lines if "failed" in line and "'third'" in line], err.getvalue()  # it had worked again
    assert lines[-1] == f"alerts: 2 alert(s) could not be delivered through {dispatcher.channels[0].name}", err.getvalue()


def test_a_webhook_slower_than_apprises_read_timeout_gets_one_post_with_rto_in_its_url(httpserver):
    # apprise gives up after 4 s by default: a slower webhook counted failed and got every retry (README)
    from jaxrl.alerts import Alert, Dispatcher, make_channels

    httpserver.expect_request("/slow", method="POST").respond_with_handler(
        lambda request: time.sleep(5) or Response("ok")
    )
    dispatcher = Dispatcher(make_channels([f"json://127.0.0.1:{httpserver.port}/slow?rto=15"]), retries=2)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        dispatcher.send(Alert("rule", "warn", "slow", "text"))
        dispatcher.close(60)
    assert [p["title"] for p in posts(httpserver, "/slow")] == ["slow"]
    assert "failed" not in err.getvalue() and "could not be delivered" not in err.getvalue(), err.getvalue()


def test_alerts_still_in_flight_when_flush_s_runs_out_are_unconfirmed_not_lost(httpserver):
    # they were counted as "could not be delivered", yet the one in flight arrived a moment later
    from jaxrl.alerts import Alert, Dispatcher, make_channels

    httpserver.expect_request("/slow", method="POST").respond_with_handler(lambda request: time.sleep(2) or Response("ok"))
    dispatcher = Dispatcher(make_channels([f"json://127.0.0.1:{httpserver.port}/slow?rto=15"]), retries=0)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        dispatcher.send(Alert("rule", "warn", "first", "text"))
        dispatcher.send(Alert("rule", "warn", "second", "text"))
        time.sleep(0.5)  # the first is in flight
        dispatcher.close(1)
    name = dispatcher.channels[0].name
    assert err.getvalue().splitlines() == [
        f"alerts: gave up waiting after 1 s for {name}",
        f"alerts: 2 alert(s) through {name} were in flight or queued when alerts.flush_s=1 s ran out, not confirmed "
        "delivered (a slow channel, e.g. email at one message per 5.5 s, needs a longer alerts.flush_s)",
    ], err.getvalue()
    # the thread goes on while the process lives: both arrive (and none lands in a later test's server)
    wait_until(lambda: len(posts(httpserver, "/slow")) == 2, 15, "the alerts in flight and queued")
    assert [p["title"] for p in posts(httpserver, "/slow")] == ["first", "second"]


@pytest.mark.parametrize("url", [
    "json://127.0.0.1:8080/hooks/SECRET", "jsons://h.example/hook?+X-Api-Key=SECRET", "ntfy://ntfy.sh/SECRETtopic",
    "tgram://123456789:SECRETbot/12345", "mailto://me:SECRET@smtp.example.com?to=a@b.c", "slack://TSECRET/BSECRET/XSECRET",
    "json://SECRET@hooks.example.com/x",
])
def test_printed_urls_hold_no_token(url):
    # apprise's privacy form keeps a webhook's path and query, where its token is; stderr goes to W&B's output.log
    from jaxrl.alerts import mask

    assert "SECRET" not in mask(url) and mask(url).startswith(url.split("://")[0] + "://"), mask(url)


@pytest.mark.parametrize(
    ("value", "setting", "message"),
    [
        ("json://127.0.0.1:99999/hook", "alerts.channels=[env:JAXRL_TEST_URL]", "has port 99999; a port is 1-65535"),
        ("http://127.0.0.1:8080/hook", "alerts.channels=[env:JAXRL_TEST_URL]", "a JSON webhook is json://HOST/PATH"),
        ("127.0.0.1:8080/ping", "alerts.ping_url=env:JAXRL_TEST_URL", "alerts.ping_url (env:JAXRL_TEST_URL) must be an http(s) URL"),
        ("urls:\n  - json://127.0.0.1:8080/a\n  - http://127.0.0.1:8080/b\n", "alerts.channels=[config:{file}]",
         "apprise did not take every URL of the file: Unparseable URL http://127.0.0.1/..."),
    ],
    ids=["env-port", "env-http", "env-ping", "config-dropped"],
)
def test_urls_from_the_environment_or_a_file_are_checked_before_training(monkeypatch, tmp_path, value, setting, message):
    # checked only when written in the config, they failed when the first alert was sent, or never said
    file = tmp_path / "apprise.yml"
    file.write_text(value)
    monkeypatch.setenv("JAXRL_TEST_URL", value)
    run = from_dict(compose(setting.format(file=file)))
    with pytest.raises(ConfigError) as refused:
        alert_hooks(run)
    assert message in str(refused.value) and "/hook" not in str(refused.value), refused.value


def test_an_email_to_several_recipients_in_an_env_var_is_one_channel(monkeypatch):
    # the variable was split at every comma, mailto's to=a,b included
    from jaxrl.alerts import make_channels

    monkeypatch.setenv("JAXRL_TEST_URL", "mailto://127.0.0.1:2525?from=j@example.com&to=me@example.com,boss@example.com")
    (channel,) = make_channels(["env:JAXRL_TEST_URL"])
    assert channel.name == "#0 env:JAXRL_TEST_URL (mailto://127.0.0.1:2525/...)"


def test_rules_without_a_channel_are_told(capsys):
    alert_hooks(from_dict(compose("alerts=none", "alerts.rules=[{metric: perf/sps, op: '>', value: 1}]")))
    assert "alerts: 1 rule(s) and no channel, so their alerts go nowhere" in capsys.readouterr().err
    alert_hooks(from_dict(compose("alerts=none")))  # neither: nothing to tell
    assert capsys.readouterr().err == ""


def test_a_population_that_diverges_at_once_gets_one_short_alert(tmp_path, capsys):
    # 12 members went NaN together: the title named member 0, the text all 12 (1,690 characters)
    from jaxrl.events import ChunkDone

    (hook,) = alert_hooks(from_dict(compose("alerts=none", "alerts.channels=[console]", "alerts.on_nonfinite=continue")))
    hook.on_start(RunInfo(tmp_path, "run", "ppo", "mc", {}, [{"seed": s} for s in range(12)], 16384))
    hook.on_chunk(ChunkDone(0, False, 4096, [{"loss/policy": math.nan}] * 12, None, False))
    hook.on_exit({"status": "finished"})
    (alert,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ALERT")]
    assert "NaN/inf in 12 members at step 4096" in alert and "member 7 (seed 7)" in alert, alert
    assert "member 8 (seed 8)" not in alert and "and 4 more members" in alert, alert


def test_a_run_that_fails_before_training_is_named_with_its_folder(tmp_path, capsys):
    # an out-of-memory init or a full disk before the first chunk: the alert said run "jaxrl", folder the cwd
    (hook,) = alert_hooks(from_dict(compose()), run_dir=tmp_path / "myrun")
    hook.on_exit({"status": "failed", "env_steps": 0, "error": "OSError: [Errno 28] No space left on device"})
    (alert,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ALERT")]
    assert "run failed (myrun)" in alert and f"(run folder {socket.gethostname()}:{tmp_path / 'myrun'})" in alert, alert

def test_a_failed_checkpoint_alerts_once_until_one_is_saved_again(tmp_path, capsys):
    # a full disk fails every save: one alert, not one per checkpoint; after a save that worked, again
    from jaxrl.events import CheckpointDone

    (hook,) = alert_hooks(from_dict(compose("alerts=none", "alerts.channels=[console]")))
    hook.on_start(RunInfo(tmp_path, "run", "ppo", "mc", {}, [{"seed": 0}], 16384))
    disk_full = "OSError: [Errno 28] No space left on device"
    for step, path, error, kept in [(4096, None, disk_full, []), (8192, None, disk_full, []),
                                    (12288, tmp_path / "12288", None, [12288]), (16384, None, disk_full, [12288])]:
        hook.on_checkpoint(CheckpointDone(step, path, error, kept))
    hook.on_exit({"status": "finished"})
    alerts = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ALERT")]
    assert len(alerts) == 2, alerts
    assert alerts[0].startswith("ALERT [error] checkpoint failed at step 4096 (run)") and disk_full in alerts[0]
    assert "a resume after a preemption now starts over: it has no checkpoint" in alerts[0]
    assert "checkpoint failed at step 16384" in alerts[1] and "now starts from env step 12288, its newest" in alerts[1]


def test_a_cpu_rule_waits_for_a_real_measurement():
    # psutil says 0.0 for a first call whatever the load: a "cpu below 5%" rule fired as every run started
    from jaxrl.alerts import SYSTEM_METRICS

    cpu = SYSTEM_METRICS["system/cpu_percent"]
    cpu.restart()
    assert cpu(Path(".")) is None
    end = time.monotonic() + 0.6
    while time.monotonic() < end:  # one core busy for the whole measurement
        pass
    assert cpu(Path(".")) > 10


def test_cpu_rules_in_the_monitor_thread_see_the_load_each_of_them(tmp_path, capsys):
    # the monitor samples in its own thread, where psutil's first reading was 0.0 (an "idle" rule
    # fired on a busy machine), and a second rule on the metric sampled again at once and saw nothing
    rules = ", ".join(f"{{name: {name}, kind: system, metric: system/cpu_percent, op: '{op}', value: {value}}}"
                      for name, op, value in [("idle", "<", 1), ("busy", ">", 1), ("busier", ">", 2)])
    (hook,) = alert_hooks(from_dict(compose(
        "alerts=none", "alerts.channels=[console]", "alerts.interval_s=0.5", "alerts.timeout_s=2", f"alerts.rules=[{rules}]")))
    hook.on_start(RunInfo(tmp_path, "run", "ppo", "mc", {}, [{"seed": 0}], 16384))
    end = time.monotonic() + 2.5
    while time.monotonic() < end:  # one core busy for five of the monitor's ticks
        pass
    hook.on_exit({"status": "finished"})
    alerts = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ALERT")]
    assert sorted(line.split()[2] for line in alerts) == ["busier", "busy"], alerts


def test_a_channel_in_an_unset_env_var_fails_before_training(monkeypatch):
    from jaxrl.alerts import alert_hooks

    monkeypatch.delenv("JAXRL_TEST_UNSET", raising=False)
    run = from_dict(compose("alerts.channels=[console,env:JAXRL_TEST_UNSET]"))
    with pytest.raises(ConfigError, match="environment variable JAXRL_TEST_UNSET is not set"):
        alert_hooks(run)
    # a URL of the heartbeat's in an unset variable is named by its key too
    with pytest.raises(ConfigError, match="^alerts.ping_url=env:JAXRL_TEST_UNSET: environment variable JAXRL_TEST_UNSET is not set"):
        alert_hooks(from_dict(compose("alerts.ping_url=env:JAXRL_TEST_UNSET")))


def test_presets_validate():
    for preset in ("default", "none", "solved"):
        alerts = from_dict(compose(f"alerts={preset}")).alerts
        assert alerts.on_nonfinite == "stop"
    assert from_dict(compose("alerts=none")).alerts.rules == ()


def wait_until(condition, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def watch(runs: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jaxrl.watch", str(runs), "--interval", "0.3", "--state", str(runs / "state.json"), *args],
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_resumed_run_counts_its_steps_from_its_checkpoint(tmp_path):
    run = from_dict(compose("alerts.channels=[]"))
    (hook,) = alert_hooks(run)
    hook.on_start(RunInfo(tmp_path, "run", "ppo", "mc", {}, [{"seed": 0}], 16384, start_step=8192))
    # where the session's first NaN window starts, and the step jaxrl.watch reports
    assert (hook.prev_step, hook.step) == (8192, 8192)
    hook.on_exit({"status": "stopped"})
    assert json.loads((tmp_path / "heartbeat.json").read_text())["step"] == 8192



def test_a_run_resumed_on_another_machine_keeps_the_id_jaxrl_watch_knows_it_by(tmp_path):
    # a new id would make the watcher take it for a new run, and report its first session's run silent;
    # a copy of the folder elsewhere is another run, with its own id
    def resumed_id(run_dir: Path, earlier: str) -> tuple[str, str]:
        run_dir.mkdir()
        (run_dir / "heartbeat.json").write_text(json.dumps({"id": earlier, "host": "node7", "time": 0}))
        (hook,) = alert_hooks(from_dict(compose("alerts.channels=[]")))
        hook.on_start(RunInfo(run_dir, "run", "ppo", "mc", {}, [{"seed": 0}], 16384, start_step=8192))
        hook.on_exit({"status": "stopped"})
        heartbeat = json.loads((run_dir / "heartbeat.json").read_text())
        return heartbeat["id"], heartbeat["host"]

    shared = tmp_path / "shared"
    assert resumed_id(shared, f"node7:{shared.resolve()}") == (f"node7:{shared.resolve()}", socket.gethostname())
    copy = tmp_path / "copy"
    assert resumed_id(copy, f"node7:{shared.resolve()}") == (f"{socket.gethostname()}:{copy.resolve()}", socket.gethostname())


class StopAt(Hook):
    """Stops the run after chunk `index`, as a preemption's SIGTERM does: a checkpoint, then the stop."""

    def __init__(self, index: int):
        self.index = index

    def on_chunk(self, event):
        if event.index == self.index:
            raise Stopped("preempted by the test")


def test_a_resumed_run_sends_no_alert_again_and_counts_points_across_sessions(tmp_path, httpserver):
    # a spot instance preempted hourly: a rule that fired must not fire again at every resume, and a
    # not_improved rule must count the points of every session, or a plateau is never told
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")

    def overrides(low: int) -> list[str]:
        return [*TINY, "seeds=2", "algo.anneal_lr=false", "checkpoint.every=1",
                "alerts.rules=[{name: solved, metric: eval/return_mean, op: '>', value: -1000},"
                f" {{name: low, metric: eval/return_mean, op: '>', value: {low}}},"
                " {name: flat, kind: not_improved, metric: opt/lr, op: '>', points: 3}]",
                f"alerts.channels=['json://127.0.0.1:{httpserver.port}/hook']"]

    with pytest.raises(Stopped):
        jaxrl.run(overrides=overrides(-3000), run_dir=tmp_path / "run", hooks=[StopAt(1)])  # 2 of 4 chunks
    assert [alert["title"] for alert in posts(httpserver, "/hook")] == ["solved (2 members) (run)", "low (2 members) (run)"]
    # the rule "low" changed: it starts afresh, and fires again
    result = jaxrl.run(overrides=overrides(-2000), resume=tmp_path / "run")
    assert result.summary["status"] == "finished" and result.summary["sessions"] == 2
    alerts = posts(httpserver, "/hook")[2:]
    assert [alert["title"] for alert in alerts] == ["low (2 members) (run)", "flat (2 members) (run)"], alerts
    # lr's best at step 4096, then 3 points no better: 8192 (session 1), 12288 and 16384 (session 2)
    assert "at env step 12288" in alerts[0]["message"] and "at env step 16384" in alerts[1]["message"], alerts


class Counting(Hook):
    """A hook with a state: `state` as given, and what `load_state` took."""

    def __init__(self, state):
        self.saved, self.taken = state, None

    def state(self):
        return self.saved

    def load_state(self, state):
        self.taken = state["count"]


def test_a_hook_state_that_cannot_be_saved_or_taken_back_costs_a_warning_not_the_checkpoint():
    from jaxrl.runner import _load_hook_states, hook_states

    name = f"{Counting.__module__}.Counting"
    hooks = [Counting({"count": 1}), Counting({1, 2}), Hook(), Counting({"count": -math.inf}), Counting(object())]
    with pytest.warns(RuntimeWarning) as caught:
        # orbax saves JSON as json.dumps does: -inf goes, a set and an object do not
        assert hook_states(hooks) == {name: {"count": 1}, f"{name}#3": {"count": -math.inf}}
    assert [str(w.message).split(" (")[0] for w in caught] == [f"hook {name}#2's state() cannot be saved",
                                                                f"hook {name}#4's state() cannot be saved"]
    with pytest.warns(RuntimeWarning, match=rf"hook {name}#2 could not take its saved state \(KeyError"):
        _load_hook_states(hooks, {name: {"count": 1}, f"{name}#2": {}})
    assert hooks[0].taken == 1


def test_a_hook_on_another_process_takes_the_state_process_0_saved_for_it(tmp_path):
    # processes other than 0 wrap the user's hooks (jaxrl.train._InFolder): the names must still match
    from jaxrl.runner import _load_hook_states, hook_states
    from jaxrl.train import _InFolder

    name = f"{Counting.__module__}.Counting"
    wrapped = [_InFolder(Counting({"count": 1}), tmp_path), _InFolder(Counting({"count": 2}), tmp_path)]
    assert hook_states(wrapped) == {name: {"count": 1}, f"{name}#2": {"count": 2}}
    _load_hook_states(wrapped, {name: {"count": 3}, f"{name}#2": {"count": 4}})
    assert [hook.hook.taken for hook in wrapped] == [3, 4]


def test_a_heartbeat_that_cannot_be_written_silences_no_system_rule(tmp_path, capsys):
    # a full disk fails heartbeat.json first: it switched off every system rule, the one on free disk space too
    rules = "alerts.rules=[{name: disk, kind: system, metric: system/disk_free_gib, op: '<', value: 1e9}]"
    (hook,) = alert_hooks(from_dict(compose("alerts.channels=[console]", rules)))
    (tmp_path / "heartbeat.json").mkdir()  # a write there fails, as on a full disk
    hook.on_start(RunInfo(tmp_path, "run", "ppo", "mc", {}, [{"seed": 0}], 16384))
    hook.on_exit({"status": "stopped"})
    err = capsys.readouterr().err
    assert "alerts: heartbeat.json failed (IsADirectoryError" in err, err
    assert "ALERT [warn] disk" in err, err

def test_watch_sees_the_jobs_of_a_multirun_in_the_runs_folder(tmp_path, httpserver):
    httpserver.expect_request("/watch", method="POST").respond_with_data("ok")
    job = tmp_path / "runs" / "multirun-2026-12-04_21-40-00" / "1"
    job.mkdir(parents=True)
    # a job's heartbeat, as its trainer writes it, whose machine stopped 30 s ago
    beat = {"id": f"node7:{job}", "run": "1", "run_dir": str(job), "state": "running", "time": time.time() - 30,
            "timeout_s": 5, "step": 4096, "total_steps": 16384, "host": "node7", "pid": 4242}
    (job / "heartbeat.json").write_text(json.dumps(beat))
    watcher = watch(tmp_path / "runs", "--channel", f"json://127.0.0.1:{httpserver.port}/watch")
    try:
        wait_until(lambda: posts(httpserver, "/watch"), 30, "the silent-run alert")
        assert posts(httpserver, "/watch")[0]["title"] == "1 went silent"
        # job "1" of which multirun: its folder says
        assert f"on node7 (pid 4242, run folder {job})" in posts(httpserver, "/watch")[0]["message"]
    finally:
        watcher.kill()
        watcher.wait()


@pytest.mark.slow
def test_watch_alerts_on_a_killed_run_not_a_finished_one_and_survives_restart(tmp_path, httpserver):
    httpserver.expect_request("/watch", method="POST").respond_with_data("ok")
    runs = tmp_path / "runs"
    runs.mkdir()
    listen = free_port()
    channel = f"json://127.0.0.1:{httpserver.port}/watch"
    watcher = watch(runs, "--channel", channel, "--listen", f"127.0.0.1:{listen}")
    common = [*TINY, "seeds=1", "alerts.interval_s=0.3", "alerts.timeout_s=4", "alerts.channels=[]"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    finishing = subprocess.Popen(
        [sys.executable, "-m", "jaxrl.train", *common, "total_timesteps=150000", f"run_dir={runs / 'done'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    # the killed one also posts its heartbeats to the endpoint: both sources, one alert
    killed = subprocess.Popen(
        [sys.executable, "-m", "jaxrl.train", *common, "total_timesteps=5000000", f"run_dir={runs / 'killed'}",
         f"alerts.watch_url=http://127.0.0.1:{listen}/heartbeat"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        wait_until(lambda: (runs / "killed" / "heartbeat.json").exists(), 240, "the heartbeat")
        time.sleep(1.0)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        silent = lambda: [p for p in posts(httpserver, "/watch") if "killed went silent" in p["title"]]  # noqa: E731
        waited = wait_until(silent, 4 + 6, "the silent-run alert")
        assert waited < 10
        assert finishing.wait(240) == 0, finishing.stderr.read()
        time.sleep(5)  # longer than the timeout: a finished run must stay quiet
        assert [p["title"] for p in posts(httpserver, "/watch")] == ["killed went silent"]
        assert "no heartbeat for" in silent()[0]["message"]
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(30) == 0
        # restarted: it remembers the alert (no repeat) and that the run was silent
        watcher = watch(runs, "--channel", channel)
        time.sleep(2)
        assert len(posts(httpserver, "/watch")) == 1
        heartbeat = json.loads((runs / "killed" / "heartbeat.json").read_text())
        (runs / "killed" / "heartbeat.json").write_text(json.dumps({**heartbeat, "time": time.time() + 30}))
        wait_until(lambda: len(posts(httpserver, "/watch")) == 2, 10, "the back-again alert")
        assert posts(httpserver, "/watch")[1]["title"] == "killed is back"
    finally:
        for proc in (watcher, finishing, killed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_rule_on_the_episode_return_is_not_called_unlogged_before_an_episode_ends(tmp_path):
    # mountaincar's episodes are 999 steps: the first chunk of TINY ends none,
    # so its rows have no train/episode_return yet (alerts=solved watches it)
    result = run_cli([*TINY, "checkpoint.enabled=false",
                      "alerts.rules=[{kind: not_improved, metric: train/episode_return, op: '>', points: 10},"
                      " {name: typo, metric: train/episode_retrun, op: '>', value: 0}]",
                      f"run_dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "train/episode_return" not in rows[0] and any("train/episode_return" in row for row in rows)
    assert "watches 'train/episode_return'" not in result.stderr
    # a misspelt name is still told, with the right one among the logged metrics
    said = [line for line in result.stderr.splitlines() if "watches 'train/episode_retrun', which this run does not log" in line]
    assert len(said) == 1 and "train/episode_return" in said[0], result.stderr


def test_a_rule_on_accelerator_memory_on_the_cpu_is_told_it_never_fires(tmp_path):
    # a GPU run that fell back to the CPU (a CUDA install that broke) would have no memory alert, unsaid
    result = run_cli([*TINY, "checkpoint.enabled=false", f"run_dir={tmp_path / 'run'}",
                      "alerts.rules=[{name: gpu, kind: system, metric: system/accelerator_memory_percent, op: '>', value: 90}]"],
                     tmp_path, JAX_PLATFORMS="cpu")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("alerts: rule 'gpu' watches")]
    assert said == ["alerts: rule 'gpu' watches 'system/accelerator_memory_percent', which this run's cpu device does not "
                    "report, so it never fires; watch system/memory_percent or system/rss_gib instead"], result.stderr


def test_members_that_cross_a_line_together_share_one_alert(tmp_path, httpserver):
    # a sweep that solves the task at the same evaluation: one SMS naming each member, not one per member
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    result = run_cli([*TINY, "seeds=3", "checkpoint.enabled=false", f"run_dir={tmp_path / 'run'}",
                      "alerts.rules=[{name: solved, metric: eval/return_mean, op: '>', value: -1000}]",
                      f"alerts.channels=['json://127.0.0.1:{httpserver.port}/hook']"], tmp_path)
    assert result.returncode == 0, result.stderr
    alerts = posts(httpserver, "/hook")
    assert [alert["title"] for alert in alerts] == ["solved (3 members) (run)"], alerts
    assert all(f"member {i} (seed {i}): eval/return_mean = " in alerts[0]["message"] for i in range(3)), alerts
    assert "at env step 4096" in alerts[0]["message"]


def test_a_population_rule_still_fires_after_one_member_went_nan(tmp_path, httpserver):
    # on_nonfinite=continue trains on past member 1's NaN: the population's mean must not turn NaN with it
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    result = run_cli([*TINY, "seeds=2", "checkpoint.enabled=false", f"run_dir={tmp_path / 'run'}",
                      "alerts.test_nan=[0,1]", "alerts.on_nonfinite=continue",
                      "alerts.rules=[{name: pop, metric: loss/value, op: '>', value: -1, scope: population}]",
                      f"alerts.channels=['json://127.0.0.1:{httpserver.port}/hook']"], tmp_path)
    assert result.returncode == 0, result.stderr
    pop = [alert for alert in posts(httpserver, "/hook") if alert["title"].startswith("pop")]
    assert len(pop) == 1 and "(population mean, 1 non-finite member(s) left out) at env step 4096" in pop[0]["message"], pop
