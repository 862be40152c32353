"""Alerts: rules that watch a run, channels that tell a human, and a heartbeat.

Rules (configured as `alerts.rules`, see `jaxrl.config.AlertRule`):
metric thresholds and "not improved" on the logged rows (checked between
chunks, on the training thread); non-finite losses and parameters (always on:
a flag computed inside the jitted chunk, see `nonfinite`); system thresholds
and no progress (checked by a monitor thread that does not depend on the
training loop, so a hung chunk is still seen); how the run ended (on_exit).

Channels (`alerts.channels`): the console, wandb (`run.alert` through the
sinks) and apprise URLs (email, SMS gateways, Slack, webhooks, ...). Delivery
runs on a background thread with retries; a failing channel is logged once
and never slows or stops training.

The monitor thread also writes `heartbeat.json` in the run folder, can post
it to a `jaxrl.watch` endpoint, and can ping a dead-man's switch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import operator
import os
import queue
import re
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import psutil

from jaxrl.config import AlertRule
from jaxrl.errors import ConfigError, Stopped, last_line
from jaxrl.events import EPISODE_METRICS, CheckpointDone, ChunkDone, Hook
from jaxrl.files import run_name, stopped_resumably, write_atomically
from jaxrl.sinks.base import RunInfo, Sink

if TYPE_CHECKING:
    from jaxrl.config import AlertsConfig, RunConfig

__all__ = [
    "HEARTBEAT_FILE",
    "LEVELS",
    "NONFINITE_METRIC",
    "OPS",
    "SYSTEM_METRICS",
    "Alert",
    "AlertHook",
    "Dispatcher",
    "alert_hooks",
    "check_alerts",
    "check_channel",
    "inject_nan",
    "make_channels",
    "mask",
    "nonfinite",
    "write_json",
]

HEARTBEAT_FILE = "heartbeat.json"
NONFINITE_METRIC = "health/nonfinite_params"
"""Per update and member: 1.0 when the policy parameters hold a NaN or inf
after the update (computed in the jitted chunk); a logged row has its mean."""

NONFINITE_RULE = AlertRule(kind="metric", name="non-finite", level="error")
"""The always-on rule: NaN/inf in a member's losses, metrics or policy parameters."""
CHECKPOINT_RULE = AlertRule(kind="metric", name="checkpoint-failed", level="error")
"""The always-on rule: a checkpoint could not be written (a full disk, a lost mount)."""

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
LEVELS = ("info", "warn", "error")
KINDS = ("metric", "not_improved", "system", "no_progress", "run")
SCOPES = ("member", "population")
ENDINGS = ("finished", "failed", "stopped", "interrupted")
NONFINITE_ACTIONS = ("stop", "continue")
RULE_FIELDS = {
    "metric": ("metric", "op", "value", "points", "scope", "cooldown_s"),
    "not_improved": ("metric", "op", "points", "scope", "cooldown_s"),
    "system": ("metric", "op", "value", "points", "cooldown_s"),
    "no_progress": ("seconds", "cooldown_s"),
    "run": ("when",),
}
"""The fields each kind of rule reads, besides kind, name and level."""
MEMBERS_NAMED = 8
"""An alert about several members names this many (the rest are counted):
an SMS of a 64-member sweep stays readable."""


def _accelerator_memory_percent() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    if not stats.get("bytes_limit"):
        return None  # the CPU backend reports no limit
    return 100.0 * stats.get("bytes_in_use", 0) / stats["bytes_limit"]


class _CpuPercent:
    """The machine's CPU use since the previous call (the monitor's interval),
    or None until a measurement spans half a second: psutil says 0.0 for its
    first call, and for a call right after another, whatever the load. psutil
    keeps its previous reading per thread: `restart` in the thread that calls."""

    def __init__(self) -> None:
        self.since: float | None = None

    def restart(self) -> None:
        """Starts a measurement (a monitor starting): the next call says None."""
        psutil.cpu_percent(interval=None)
        self.since = time.monotonic()

    def __call__(self, run_dir: Path) -> float | None:
        value = psutil.cpu_percent(interval=None)
        now, since = time.monotonic(), self.since
        self.since = now
        return value if since is not None and now - since >= 0.5 else None


_cpu_percent = _CpuPercent()

SYSTEM_METRICS: dict[str, Callable[[Path], float | None]] = {
    "system/memory_percent": lambda run_dir: psutil.virtual_memory().percent,
    "system/rss_gib": lambda run_dir: psutil.Process().memory_info().rss / 2**30,
    "system/cpu_percent": _cpu_percent,
    "system/disk_free_gib": lambda run_dir: psutil.disk_usage(str(run_dir)).free / 2**30,
    "system/accelerator_memory_percent": lambda run_dir: _accelerator_memory_percent(),
}
"""System values a `kind: system` rule can watch; None where not available."""


# ---------------------------------------------------------------- in the jitted chunk


def nonfinite(tree: Any) -> jax.Array:
    """1.0 when any floating leaf of `tree` holds a NaN or inf, else 0.0 (a
    float32 scalar, traceable): one reduction, no host copy of the tree."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return 1.0 - jnp.stack(leaves).all().astype(jnp.float32) if leaves else jnp.float32(0.0)


def inject_nan(states: Any, alerts: AlertsConfig, index: int) -> Any:
    """Test only (`alerts.test_nan=[chunk, member]`): before chunk `index`
    equal to `chunk`, the member's traced hyperparameters become NaN, as a
    diverging learning rate would make its parameters; otherwise `states`."""
    if alerts.test_nan is None or alerts.test_nan[0] != index:
        return states
    member = alerts.test_nan[1]
    hp = jax.tree.map(
        lambda x: x.at[member].set(jnp.nan) if jnp.issubdtype(x.dtype, jnp.inexact) else x, states.hp
    )
    return states.replace(hp=hp)


# ---------------------------------------------------------------- validation


def _title(title: str, run: str, limit: int = 63) -> str:
    """"TITLE (RUN)" in at most `limit` characters (W&B takes titles under
    64), the run's name shortened first, with an ellipsis."""
    whole = f"{title} ({run})"
    if len(whole) <= limit:
        return whole
    room = limit - len(title) - 4  # " (", the ellipsis and ")"
    return f"{title} ({run[:room]}…)" if room > 0 else title[: limit - 1] + "…"


def _rule_name(rule: AlertRule) -> str:
    if rule.name:
        return rule.name
    if rule.kind in ("metric", "system"):
        return f"{rule.metric} {rule.op} {rule.value:g}"
    if rule.kind == "not_improved":
        return f"{rule.metric} not improved for {rule.points} points"
    if rule.kind == "no_progress":
        return f"no progress for {rule.seconds:g} s"
    return f"run {'/'.join(rule.when)}"


def _rule_key(rule: AlertRule) -> str:
    """Every field of `rule`, as one string: whose saved state a resumed run's rule takes."""
    return json.dumps(dataclasses.asdict(rule), sort_keys=True)


def check_alerts(alerts: AlertsConfig) -> None:
    """Raises a one-line ConfigError for a rule or channel that cannot work:
    an unknown kind, op, level, scope, system metric or run status, a missing
    metric or value, a system metric in a metric rule, a timeout_s under 3
    heartbeat intervals, an unknown channel, a malformed URL or one apprise
    does not accept."""
    for i, rule in enumerate(alerts.rules):
        where = f"alerts.rules[{i}]"
        for field, value, valid in [
            ("kind", rule.kind, KINDS),
            ("level", rule.level, LEVELS),
            ("op", rule.op, tuple(OPS)),
            ("scope", rule.scope, SCOPES),
        ]:
            if value not in valid:
                raise ConfigError(f"{where}.{field}={value!r} is not one of: {', '.join(valid)}")
        if unread := [f.name for f in dataclasses.fields(rule) if f.name not in ("kind", "name", "level", *RULE_FIELDS[rule.kind])
                      and getattr(rule, f.name) != f.default]:
            # a value the rule never reads is a mistake (value: 3 meant points: 3, or another kind)
            raise ConfigError(
                f"{where}.{unread[0]}={getattr(rule, unread[0])!r}: a {rule.kind} rule does not read {unread[0]}; "
                f"its fields are {', '.join(RULE_FIELDS[rule.kind])} (and name, level)"
            )
        if rule.kind in ("metric", "not_improved", "system") and not rule.metric:
            raise ConfigError(f"{where}: a {rule.kind} rule needs a metric, e.g. metric: eval/return_mean")
        if rule.kind in ("metric", "system") and rule.value is None:
            raise ConfigError(f"{where}: a {rule.kind} rule needs a value to compare {rule.metric} with")
        if rule.kind in ("metric", "not_improved") and rule.metric in SYSTEM_METRICS:
            # kind defaults to metric: without this, the rule would look for it in the
            # logged rows and be told, mid-run, that the run does not log it
            raise ConfigError(f"{where}.metric={rule.metric!r} is a system metric, sampled by the monitor, not logged; give kind: system")
        if rule.kind == "system" and rule.metric not in SYSTEM_METRICS:
            raise ConfigError(f"{where}.metric={rule.metric!r} is not a system metric; choose one of: {', '.join(SYSTEM_METRICS)}")
        if rule.kind == "not_improved" and rule.op not in (">", ">=", "<", "<="):
            raise ConfigError(f"{where}.op={rule.op!r}: not_improved needs '>' or '>=' (higher is better), '<' or '<=' (lower is)")
        if rule.points < 1:
            raise ConfigError(f"{where}.points must be >= 1, got {rule.points}")
        if rule.seconds <= 0:
            raise ConfigError(f"{where}.seconds must be positive, got {rule.seconds:g}")
        if rule.cooldown_s is not None and rule.cooldown_s < 0:
            raise ConfigError(f"{where}.cooldown_s must be >= 0 (or null: again only after the condition cleared), got {rule.cooldown_s:g}")
        bad = [s for s in rule.when if s not in ENDINGS]
        if bad:
            raise ConfigError(f"{where}.when: unknown run status {bad[0]!r}; choose from: {', '.join(ENDINGS)}")
    if alerts.on_nonfinite not in NONFINITE_ACTIONS:
        raise ConfigError(f"alerts.on_nonfinite={alerts.on_nonfinite!r} is not one of: {', '.join(NONFINITE_ACTIONS)}")
    for name, value in [("interval_s", alerts.interval_s), ("timeout_s", alerts.timeout_s)]:
        if value <= 0:
            raise ConfigError(f"alerts.{name} must be positive, got {value}")
    if alerts.timeout_s < 3 * alerts.interval_s:
        # heartbeats come every interval_s (later when a tick posts or pings): jaxrl.watch
        # would call a healthy run silent, then back, at every heartbeat
        raise ConfigError(
            f"alerts.timeout_s={alerts.timeout_s:g} is too short for a heartbeat every alerts.interval_s="
            f"{alerts.interval_s:g} s; give a timeout_s of at least 3 x interval_s ({3 * alerts.interval_s:g})"
        )
    for name, value in [("retries", alerts.retries), ("flush_s", alerts.flush_s)]:
        if value < 0:
            raise ConfigError(f"alerts.{name} must be >= 0, got {value:g}")
    for i, spec in enumerate(alerts.channels):
        check_channel(f"alerts.channels[{i}]", spec, wandb_ok=True)
    for name, url in [("ping_url", alerts.ping_url), ("watch_url", alerts.watch_url)]:
        if not url or url.startswith("env:"):
            continue
        if _check_http_url(f"alerts.{name}", url).password:
            # the config is saved in the run folder and sent to wandb
            raise ConfigError(f"alerts.{name} holds a password; put the URL in an environment variable and give env:NAME")


def _check_http_url(where: str, url: str) -> urllib.parse.SplitResult:
    """`url` split, or a one-line ConfigError unless it is http(s) with a host and a port 1-65535."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises for a port that is not a number 0-65535
    except ValueError as err:  # e.g. "Invalid IPv6 URL" for an unclosed [
        raise ConfigError(f"{where}={mask(url)!r} is not a URL ({err}); give http(s)://HOST[:PORT]/PATH or env:NAME") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ConfigError(f"{where} must be an http(s) URL with a host (and a port 1-65535) or env:NAME, got {mask(url)!r}")
    return parts


def check_channel(where: str, spec: str, wandb_ok: bool) -> None:
    """Raises a one-line ConfigError (naming `where`) for a channel spec that
    cannot work; "wandb" only where `wandb_ok` (a trainer, not jaxrl.watch)."""
    if spec == "console" or (spec == "wandb" and wandb_ok):
        return
    if spec.startswith("env:"):
        if not spec[4:]:
            raise ConfigError(f"{where}: env: needs a variable name, e.g. env:JAXRL_ALERT_URL")
        return  # read when the run starts: the variable may be set on the training machine only
    if spec.startswith("config:"):
        if not Path(spec[7:]).expanduser().is_file():
            raise ConfigError(f"{where}: apprise config file {spec[7:]!r} does not exist")
        return
    if "://" not in spec:
        named = "console, wandb" if wandb_ok else "console"
        raise ConfigError(f"{where}={spec!r} is not a channel; give {named}, an apprise URL (mailto://, json://, slack://, ...), env:NAME or config:PATH")
    try:
        password = urllib.parse.urlsplit(spec).password
    except ValueError as err:  # e.g. "Invalid IPv6 URL" for an unclosed [
        raise ConfigError(f"{where}={mask(spec)!r} is not a URL ({err}); see https://appriseit.com/services/") from None
    if password:
        raise ConfigError(f"{where}: {mask(spec)!r} holds a password; put the URL in an environment variable and give env:NAME")
    check_apprise_url(where, spec)


def check_apprise_url(where: str, url: str) -> Any:
    """The apprise plugin for `url`, or a one-line ConfigError (naming `where`)
    when apprise does not take it or its port is not 1-65535; for a URL written
    in the config and for those env:NAME and config:PATH hold alike."""
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        scheme = url.split("://", 1)[0]
        # a webhook's URL is the usual first try; apprise spells it json:// or jsons://
        hint = "; a JSON webhook is json://HOST/PATH (jsons:// for https)" if scheme in ("http", "https") else ""
        raise ConfigError(f"{where}: apprise does not accept {mask(url)!r} (scheme {scheme!r}){hint}; see https://appriseit.com/services/")
    # apprise takes any number as a port; the alert would fail only when sent, hours later
    port = getattr(plugin, "port", None)
    if isinstance(port, int) and not 0 < port <= 65535:
        raise ConfigError(f"{where}: {mask(url)!r} has port {port}; a port is 1-65535")
    return plugin


def mask(url: str) -> str:
    """`url` safe to print: its scheme and host, as apprise's privacy form
    gives them when apprise knows the URL (a token in the host, as Telegram's,
    is hidden), and no path or query (a webhook's token, an API key header)."""
    if "://" not in url:
        return url
    try:
        import apprise

        plugin = apprise.Apprise.instantiate(url)
        if plugin is not None:
            private = urllib.parse.urlsplit(plugin.url(privacy=True))
            port = f":{private.port}" if private.port else ""
            return f"{private.scheme}://{private.hostname or ''}{port}/..."
    except Exception:  # noqa: BLE001 (masking must never fail)
        pass
    try:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}/..."
    except ValueError:  # not even a URL: its scheme alone is safe
        return f"{url.split('://', 1)[0]}://..."


# ---------------------------------------------------------------- channels and delivery


@dataclasses.dataclass(frozen=True)
class Alert:
    """One alert: `rule` (its name), `level` (info/warn/error), a short
    `title` and the `text`; `member` is the population member it is about
    (None: the whole run)."""

    rule: str
    level: str
    title: str
    text: str
    member: int | None = None


class Channel:
    """Where alerts go. `deliver` raises (or returns an error string) when
    the alert did not get through; `name` is safe to print."""

    name = "channel"

    def deliver(self, alert: Alert) -> str | None:
        """Delivers `alert`; returns None when done, else why not."""
        raise NotImplementedError


class ConsoleChannel(Channel):
    """Prints the alert on stderr."""

    name = "console"

    def deliver(self, alert: Alert) -> str | None:
        """One line (plus the text) on stderr."""
        print(f"ALERT [{alert.level}] {alert.title}: {alert.text}", file=sys.stderr, flush=True)
        return None


class WandbChannel(Channel):
    """`run.alert` on the wandb run of the member (all members' runs for a
    run-wide alert), through the sinks' `alert`. Offline, wandb only records it."""

    name = "wandb"

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def deliver(self, alert: Alert) -> str | None:
        """Hands the alert to every sink (only the wandb sink acts on it)."""
        for sink in self.sinks:
            sink.alert(alert.title, alert.text, alert.level, alert.member)
        return None


class AppriseChannel(Channel):
    """One apprise target: a URL, or one service read from an apprise config
    file. Each target is its own channel, retried on its own, so a dead target
    never makes the others send an alert twice."""

    def __init__(self, target: Any, name: str | None = None):
        import apprise

        # its warnings reach the user once, through the dispatcher (`deliver`
        # captures them), not again through a root handler that another
        # library set up, once per attempt
        logging.getLogger("apprise").propagate = False
        self._apprise = apprise.Apprise()
        if not self._apprise.add(target):
            raise ConfigError(f"alerts channel {name or mask(target)}: apprise does not accept it")
        self.name = name or mask(target)

    def deliver(self, alert: Alert) -> str | None:
        """Sends through apprise; apprise's own log lines become the reason."""
        import apprise

        kind = {"info": apprise.NotifyType.INFO, "warn": apprise.NotifyType.WARNING, "error": apprise.NotifyType.FAILURE}
        # apprise logs each failed attempt; captured here so a failing channel
        # is reported once, by the dispatcher, not once per retry
        with apprise.LogCapture(level=apprise.logging.DEBUG) as log:
            ok = self._apprise.notify(title=alert.title, body=alert.text, notify_type=kind[alert.level])
        if ok:
            return None
        # lines are "time - LEVEL - message"
        entries = [parts[1:] for parts in (line.split(" - ", 2) for line in log.getvalue().splitlines()) if len(parts) == 3]
        warnings = [message.strip() for level, message in entries if level in ("WARNING", "ERROR", "CRITICAL")]
        reason = warnings[-1] if warnings else "apprise reported a failure"
        # its warning says "Connection error" for a refused password, a timeout and a
        # refused connection alike; the cause is logged at debug level only
        causes = [message for level, message in entries if level == "DEBUG" and message.startswith("Socket Exception: ")]
        if causes:
            # requests' errors name the URL's path, which holds a webhook's token
            cause = re.sub(r"url: \S+", "url: ...", causes[-1].removeprefix("Socket Exception: ").strip())
            reason = f"{reason.rstrip('.')}: {cause}"
        return reason


def _apprise_channels(spec: str, label: str) -> list[AppriseChannel]:
    """One channel per target of an apprise channel spec: a URL, env:NAME
    (URLs separated by spaces or commas) or config:PATH (an apprise config file).
    Named `label` and the masked URL: masked URLs of two webhooks on one host are alike."""
    if spec.startswith("env:"):
        from apprise.utils.parse import parse_urls

        # apprise's own split: a comma inside a URL (mailto's to=a,b) is not a separator
        urls = parse_urls(os.environ.get(spec[4:], ""))
        if not urls:
            raise ConfigError(f"alerts channel {spec}: environment variable {spec[4:]} is not set")
        for url in urls:
            check_apprise_url(f"alerts channel {spec}", url)
        return [AppriseChannel(url, f"{label} {spec} ({mask(url)})") for url in urls]
    if spec.startswith("config:"):
        import apprise

        config = apprise.AppriseConfig()
        config.add(str(Path(spec[7:]).expanduser()))
        # apprise leaves out a URL it cannot parse and only logs it: the alerts would go nowhere, unsaid
        with apprise.LogCapture(level=apprise.logging.ERROR) as log:
            services = config.services()
        if dropped := [line.split(" - ", 2)[-1] for line in log.getvalue().splitlines() if " - " in line]:
            said = re.sub(r"\S+://\S+", lambda url: mask(url[0]), dropped[-1])
            raise ConfigError(f"alerts channel {spec}: apprise did not take every URL of the file: {said}")
        if not services:
            raise ConfigError(f"alerts channel {spec}: the file holds no URL apprise accepts")
        for service in services:
            check_apprise_url(f"alerts channel {spec}", service.url())
        return [AppriseChannel(service, f"{label} {spec} ({mask(service.url())})") for service in services]
    return [AppriseChannel(spec, f"{label} {mask(spec)}")]


def make_channels(specs: Sequence[str], sinks: Sequence[Sink] = ()) -> list[Channel]:
    """The channels for `alerts.channels` (already checked); "wandb" goes
    through `sinks`, the run's sinks; env:NAME and config:PATH give a channel
    per URL they hold. An apprise channel's name starts with its place in
    `specs`, `#<i>`."""
    channels: list[Channel] = []
    for i, spec in enumerate(specs):
        if spec == "console":
            channels.append(ConsoleChannel())
        elif spec == "wandb":
            channels.append(WandbChannel(sinks))
        else:
            channels.extend(_apprise_channels(spec, f"#{i}"))
    return channels


class Dispatcher:
    """Delivers alerts off the training thread, one thread per channel, so a
    slow or dead channel holds up neither training nor the other channels
    (apprise itself spaces requests to one target 5.5 s apart, e.g. email).
    Each alert gets up to `retries` more attempts per channel (backing off).
    A channel that still fails is reported on stderr once, until it delivers
    again; `close` counts the alerts each channel lost."""

    def __init__(self, channels: Sequence[Channel], retries: int = 2, backoff_s: float = 0.5):
        self.channels = list(channels)
        self.retries = retries
        self.backoff_s = backoff_s
        self.failed: set[int] = set()  # failing now: reported, not again until one is delivered
        self.lost = [0] * len(self.channels)
        self._queues: list[queue.Queue[Alert | None]] = [queue.Queue() for _ in self.channels]
        # started by the first alert: a run that fails to compile leaves no thread behind
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"jaxrl-alerts-{i}", daemon=True)
            for i in range(len(self.channels))
        ]
        self._started = False
        # the training thread and the monitor's may send the first alert at once
        self._start_lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        """Queues `alert` for every channel; returns at once."""
        with self._start_lock:
            if not self._started:
                self._started = True
                for thread in self._threads:
                    thread.start()
        for q in self._queues:
            q.put(alert)

    def close(self, timeout_s: float) -> None:
        """Delivers what is queued, waiting at most `timeout_s` in all, then stops."""
        if not self._started:
            return
        for q in self._queues:
            q.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        late = [self.channels[i].name for i, t in enumerate(self._threads) if t.is_alive()]
        if late:
            print(f"alerts: gave up waiting after {timeout_s:g} s for {', '.join(late)}", file=sys.stderr, flush=True)
        for i, channel in enumerate(self.channels):
            if self.lost[i]:
                print(f"alerts: {self.lost[i]} alert(s) could not be delivered through {channel.name}",
                      file=sys.stderr, flush=True)
            if self._threads[i].is_alive():
                # the one in flight (which may still arrive) and those queued: the queue's stop marker counts the former
                unsent = self._queues[i].qsize()
                print(f"alerts: {unsent} alert(s) through {channel.name} were in flight or queued when alerts.flush_s="
                      f"{timeout_s:g} s ran out, not confirmed delivered (a slow channel, e.g. email at one message per "
                      "5.5 s, needs a longer alerts.flush_s)", file=sys.stderr, flush=True)

    def _work(self, i: int) -> None:
        while (alert := self._queues[i].get()) is not None:
            self._deliver(i, self.channels[i], alert)

    def _deliver(self, i: int, channel: Channel, alert: Alert) -> None:
        # every alert gets every attempt: a channel that failed once (a webhook's restart) may work again
        reason = None
        for attempt in range(1 + self.retries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                reason = channel.deliver(alert)
            except Exception as err:  # noqa: BLE001 (a channel is never worth a lost run)
                reason = last_line(err)
            if reason is None:
                self.failed.discard(i)
                return
        self.lost[i] += 1
        if i not in self.failed:
            self.failed.add(i)
            print(
                f"alerts: channel {channel.name} failed ({reason}) for {alert.title!r}; "
                "training goes on, and this channel's next failures are counted at the end",
                file=sys.stderr,
                flush=True,
            )


# ---------------------------------------------------------------- rules


class Latch:
    """Fires once per key while a condition holds: again only after it
    cleared, or `cooldown_s` after it last fired."""

    def __init__(self, cooldown_s: float | None):
        self.cooldown_s = cooldown_s
        self.fired_at: dict[Any, float] = {}

    def update(self, key: Any, holds: bool, now: float) -> bool:
        """Whether to fire now for `key`, given whether the condition holds."""
        if not holds:
            self.fired_at.pop(key, None)
            return False
        last = self.fired_at.get(key)
        if last is not None and (self.cooldown_s is None or now - last < self.cooldown_s):
            return False
        self.fired_at[key] = now
        return True

    def dump(self, now: float) -> list[list[Any]]:
        """[key, wall-clock time it last fired] pairs, for a checkpoint
        (`now`: this clock's time; the wall clock counts the time a run was down)."""
        wall = time.time()
        return [[key, wall - (now - at)] for key, at in self.fired_at.items()]

    def load(self, fired: list[list[Any]], now: float) -> None:
        """What `dump` returned, on this clock (`now`)."""
        wall = time.time()
        # min: another machine's clock may be ahead of this one's
        self.fired_at = {key: min(now, now - (wall - at)) for key, at in fired}


class Threshold:
    """`metric op value` for `points` consecutive points, per key (a member,
    or the population)."""

    def __init__(self, rule: AlertRule):
        self.rule = rule
        self.name = _rule_name(rule)
        self.latch = Latch(rule.cooldown_s)
        self.streak: dict[Any, int] = {}

    def check(self, key: Any, value: float, now: float) -> bool:
        """Adds a point; whether the rule fires for `key`."""
        holds = math.isfinite(value) and OPS[self.rule.op](value, self.rule.value)
        self.streak[key] = self.streak.get(key, 0) + 1 if holds else 0
        return self.latch.update(key, self.streak[key] >= self.rule.points, now)

    def state(self, now: float) -> dict[str, Any]:
        """Its progress for JSON: (key, value) pairs (keys: member indices, "population")."""
        return {"streak": list(self.streak.items()), "fired": self.latch.dump(now)}

    def load_state(self, state: dict[str, Any], now: float) -> None:
        """What `state` returned."""
        self.streak = dict(state["streak"])
        self.latch.load(state["fired"], now)


class NotImproved:
    """`metric` has not beaten its best (in the direction of `op`) for `points` points."""

    def __init__(self, rule: AlertRule):
        self.rule = rule
        self.name = _rule_name(rule)
        self.latch = Latch(rule.cooldown_s)
        self.best: dict[Any, float] = {}
        self.since: dict[Any, int] = {}

    def check(self, key: Any, value: float, now: float) -> bool:
        """Adds a point; whether the rule fires for `key`."""
        if not math.isfinite(value):
            return False
        best = self.best.get(key)
        if best is None or OPS[self.rule.op](value, best) and value != best:
            self.best[key], self.since[key] = value, 0
        else:
            self.since[key] += 1
        return self.latch.update(key, self.since[key] >= self.rule.points, now)

    def state(self, now: float) -> dict[str, Any]:
        """Its progress for JSON: (key, value) pairs (keys: member indices, "population")."""
        return {"best": list(self.best.items()), "since": list(self.since.items()), "fired": self.latch.dump(now)}

    def load_state(self, state: dict[str, Any], now: float) -> None:
        """What `state` returned."""
        self.best = dict(state["best"])
        self.since = dict(state["since"])
        self.latch.load(state["fired"], now)


class NoProgress(Latch):
    """No chunk completed for `rule.seconds`."""

    def __init__(self, rule: AlertRule):
        super().__init__(rule.cooldown_s)
        self.rule = rule
        self.name = _rule_name(rule)


def _member_label(members: list[dict[str, Any]], i: int) -> str:
    extra = ", ".join(f"{k}={v:g}" for k, v in members[i].items() if k != "seed")
    return f"member {i} (seed {members[i]['seed']}{', ' + extra if extra else ''})"


class Monitor:
    """The thread beside the training loop: every `interval_s` it writes
    heartbeat.json, samples system metrics for the system rules, checks the
    no-progress rules, posts the heartbeat to `watch_url` and pings the
    dead-man's switch. It reads only what the loop's hook sets (the step and
    time of the last chunk), so it sees a hung chunk."""

    def __init__(self, hook: AlertHook):
        self.hook = hook
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jaxrl-monitor", daemon=True)
        self._failed: set[str] = set()
        self._last_ping = 0.0

    def start(self) -> None:
        """Starts the thread after a first heartbeat."""
        _cpu_percent.restart()
        self.tick()
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread (a tick in progress completes)."""
        self.stopped.set()
        self._thread.join(self.hook.alerts.interval_s + 10)

    def _run(self) -> None:
        _cpu_percent.restart()  # this thread's first reading (psutil keeps one per thread)
        while not self.stopped.wait(self.hook.alerts.interval_s):
            self.tick()

    def tick(self) -> None:
        """One round of the monitor's duties, each on its own: a heartbeat.json
        that cannot be written (a full disk) must not silence the rule on free
        disk space, nor the posts and pings. Never raises."""
        hook = self.hook
        try:
            heartbeat = hook.heartbeat()
        except Exception as err:  # noqa: BLE001 (the monitor must outlive any failure)
            self._once("monitor", last_line(err))
            return
        self._duty("heartbeat.json", lambda: write_json(hook.run_dir / HEARTBEAT_FILE, heartbeat))
        self._duty("system rules", self._system_rules)
        self._duty("no_progress rules", self._progress_rules)
        if hook.watch_url:
            self._post(hook.watch_url, heartbeat)
        if hook.ping_url and time.time() - self._last_ping >= 60:
            self.ping("")

    def _system_rules(self) -> None:
        hook, now = self.hook, time.monotonic()
        # one sample of each metric per tick, whatever the number of rules on it: a second
        # cpu_percent call right after the first measures nothing
        values = {metric: SYSTEM_METRICS[metric](hook.run_dir) for metric in {rule.rule.metric for rule in hook.system_rules}}
        for rule in hook.system_rules:
            value = values[rule.rule.metric]
            if value is not None and rule.check(None, value, now):
                hook.send(rule.rule, rule.name, f"{rule.rule.metric} is {value:.3g} ({rule.name})")

    def _progress_rules(self) -> None:
        hook, now = self.hook, time.monotonic()
        silent = now - hook.last_progress
        for rule in hook.progress_rules:
            if rule.update(None, silent > rule.rule.seconds, now):
                hook.send(
                    rule.rule,
                    rule.name,
                    f"no chunk completed for {silent:.3g} s (last at env step {hook.step}); the run may hang",
                )

    def _duty(self, what: str, duty: Callable[[], None]) -> None:
        try:
            duty()
        except Exception as err:  # noqa: BLE001 (the monitor must outlive any failure)
            self._once(what, last_line(err))

    def ping(self, suffix: str) -> None:
        """Pings the dead-man's switch at `ping_url` + suffix ("/start", "", "/fail")."""
        self._last_ping = time.time()
        try:
            with urllib.request.urlopen(self.hook.ping_url + suffix, timeout=10):
                pass
        except Exception as err:  # noqa: BLE001
            self._once("ping", last_line(err))

    def _post(self, url: str, heartbeat: dict[str, Any]) -> None:
        request = urllib.request.Request(
            url, json.dumps(heartbeat).encode(), {"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except Exception as err:  # noqa: BLE001
            self._once("watch_url", last_line(err))

    def _once(self, what: str, reason: str) -> None:
        if what not in self._failed:
            self._failed.add(what)
            print(f"alerts: {what} failed ({reason}); training goes on, not reported again", file=sys.stderr, flush=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes `data` to `path` atomically."""
    write_atomically(path, json.dumps(data, indent=1) + "\n")


def _resolve_url(name: str, url: str | None) -> str | None:
    """alerts.`name` (ping_url, watch_url), read from the environment for env:NAME and checked there."""
    if url and url.startswith("env:"):
        value = os.environ.get(url[4:])
        if not value:
            raise ConfigError(f"alerts.{name}={url}: environment variable {url[4:]} is not set")
        _check_http_url(f"alerts.{name} ({url})", value)
        return value
    return url


class AlertHook(Hook):
    """Runs a run's alert rules and its monitor thread (see the module docstring)."""

    def __init__(self, alerts: AlertsConfig, dispatcher: Dispatcher, run_dir: Path | None = None):
        self.alerts = alerts
        self.dispatcher = dispatcher
        self.ping_url = _resolve_url("ping_url", alerts.ping_url)
        self.watch_url = _resolve_url("watch_url", alerts.watch_url)
        self.metric_rules = [
            NotImproved(r) if r.kind == "not_improved" else Threshold(r)
            for r in alerts.rules
            if r.kind in ("metric", "not_improved")
        ]
        self.system_rules = [Threshold(r) for r in alerts.rules if r.kind == "system"]
        self.progress_rules = [NoProgress(r) for r in alerts.rules if r.kind == "no_progress"]
        self.run_rules = [r for r in alerts.rules if r.kind == "run"]
        # metric rules whose metric has not yet been looked for in a logged row
        self.unchecked = [r for r in self.metric_rules if not r.rule.metric.startswith("summary/")]
        self.nonfinite_latch = Latch(None)
        self.checkpoint_latch = Latch(None)
        # the env step a resume would go on from (a NaN alert says it); None: a resume starts over
        self.newest_checkpoint: int | None = None
        # known before training starts, for a failure then (on_start gives the same again)
        self.run_dir = run_dir or Path(".")
        self.name = run_name(run_dir) if run_dir else "jaxrl"
        self.info: RunInfo | None = None
        self.monitor: Monitor | None = None
        self.status = "running"
        # stopped by SIGTERM, as spot instances and SLURM's requeues stop a run, and not on a bad state:
        # a later session is expected, and jaxrl.watch alerts when none comes (`on_exit`)
        self.awaits_resume = False
        # jaxrl.watch's key for the run: its first session's machine and folder (`on_start`)
        self.id: str | None = None
        self.step = 0
        self.prev_step = 0
        self.sps = 0.0
        self.started = time.time()
        self.last_progress = time.monotonic()
        self.last_progress_time = time.time()

    # -- helpers

    def send(self, rule: AlertRule, title: str, text: str, member: int | None = None) -> None:
        """Queues an alert of `rule` about the run (and `member`)."""
        run = self.info.name if self.info else self.name
        # the name alone is ambiguous: every multirun has a job "0", and a rule on
        # memory or disk is about one machine; the folder says where to look
        where = f"{socket.gethostname()}:{self.run_dir.resolve()}"
        self.dispatcher.send(Alert(_rule_name(rule), rule.level, _title(title, run), f"{run}: {text} (run folder {where})", member))

    def heartbeat(self) -> dict[str, Any]:
        """heartbeat.json's content: who, where, how far, how fast, and when."""
        return {
            "id": self.id or f"{socket.gethostname()}:{self.run_dir.resolve()}",
            "run": self.info.name if self.info else "",
            "run_dir": str(self.run_dir.resolve()),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "state": self.status,
            "awaits_resume": self.awaits_resume,
            "step": self.step,
            "total_steps": self.info.total_steps if self.info else 0,
            "sps": round(self.sps, 1),
            "started": self.started,
            "last_progress": self.last_progress_time,
            "time": time.time(),
            "timeout_s": self.alerts.timeout_s,
        }

    # -- a resumed run's state

    def state(self) -> dict[str, Any]:
        """The metric rules' streaks, bests and last alerts, and the members
        already reported non-finite: a resumed run goes on counting from its
        checkpoint, and sends no alert its earlier sessions sent."""
        now = time.monotonic()
        return {
            "rules": [[_rule_key(r.rule), r.state(now)] for r in self.metric_rules],
            "nonfinite": self.nonfinite_latch.dump(now),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """What `state` returned; a rule changed since starts afresh."""
        now = time.monotonic()
        saved, nonfinite = dict(state["rules"]), state["nonfinite"]  # both read before anything is taken
        for rule in self.metric_rules:
            if _rule_key(rule.rule) in saved:
                rule.load_state(saved[_rule_key(rule.rule)], now)
        self.nonfinite_latch.load(nonfinite, now)

    # -- events

    def on_start(self, run: RunInfo) -> None:
        """Starts the monitor thread and pings the dead-man's switch's start."""
        self.info, self.run_dir, self.status = run, run.run_dir, "running"
        # a run resumed on another machine (the folder on shared storage) keeps its id: a
        # watcher would take it for a new run, and the old one for one gone silent
        self.id = _earlier_id(run.run_dir) or f"{socket.gethostname()}:{run.run_dir.resolve()}"
        # a resumed run's heartbeat and first NaN window start at its checkpoint, not at 0
        self.step = self.prev_step = run.start_step
        self.newest_checkpoint = run.start_step or None
        self.last_progress, self.last_progress_time = time.monotonic(), time.time()
        self.monitor = Monitor(self)
        # the CPU backend reports no memory limit: such a rule would never fire, unsaid
        # (a GPU run that fell back to the CPU, say), as a rule on an unlogged metric would
        accelerator = "system/accelerator_memory_percent"
        if any(r.rule.metric == accelerator for r in self.system_rules) and _accelerator_memory_percent() is None:
            for rule in [r for r in self.system_rules if r.rule.metric == accelerator]:
                print(
                    f"alerts: rule {rule.name!r} watches {accelerator!r}, which this run's {jax.devices()[0].platform} "
                    f"device does not report, so it never fires; watch system/memory_percent or system/rss_gib instead",
                    file=sys.stderr,
                    flush=True,
                )
        if self.ping_url:
            self.monitor.ping("/start")
        self.monitor.start()

    def on_chunk(self, event: ChunkDone) -> None:
        """Checks the rows for non-finite values, then the metric rules;
        raises Stopped on a non-finite value when on_nonfinite is "stop"."""
        self.prev_step, self.step = self.step, event.step
        self.last_progress, self.last_progress_time = time.monotonic(), time.time()
        self.sps = float(np.mean([row.get("perf/sps", 0.0) for row in event.rows]))
        now = time.monotonic()
        self._check_nonfinite(event, now)
        self._check_logged(event)
        for rule in self.metric_rules:
            metric = rule.rule.metric
            values = [row.get(metric) for row in event.rows]
            if rule.rule.scope == "population":
                # a member gone NaN (told by its own alert; on_nonfinite=continue trains on)
                # would make the mean NaN, and the rule silent, for the rest of the run
                present = [v for v in values if v is not None and math.isfinite(v)]
                if present and rule.check("population", float(np.mean(present)), now):
                    left_out = sum(v is not None for v in values) - len(present)
                    of = f", {left_out} non-finite member(s) left out" if left_out else ""
                    text = f"{metric} = {np.mean(present):.4g} (population mean{of}) at env step {event.step}"
                    self.send(rule.rule, rule.name, f"{rule.name}: {text}")
                continue
            # every member it fires for at this chunk, in one alert: a population
            # that crosses a line together sends one SMS, not one per member
            fired = [(i, value) for i, value in enumerate(values) if value is not None and rule.check(i, value, now)]
            if not fired:
                continue
            said = _some_members(
                [f"{_member_label(self.info.members, i) if self.info else f'member {i}'}: {metric} = {value:.4g}"
                 for i, value in fired]
            )
            who = f"member {fired[0][0]}" if len(fired) == 1 else f"{len(fired)} members"
            text = f"{rule.name}: {said} at env step {event.step}"
            self.send(rule.rule, f"{rule.name} ({who})", text, fired[0][0] if len(fired) == 1 else None)

    def _check_logged(self, event: ChunkDone) -> None:
        # a misspelt metric, or one another algorithm logs, would never fire: say
        # so at the first row that could hold it (eval/ metrics: an evaluated one;
        # the episode metrics are logged once an episode ends, often chunks later)
        logged = {*(event.rows[0] if event.rows else ()), *EPISODE_METRICS}
        for rule in [r for r in self.unchecked if event.evaluated or not r.rule.metric.startswith("eval/")]:
            self.unchecked.remove(rule)
            if rule.rule.metric not in logged:
                _unlogged(rule.name, rule.rule.metric, logged)

    def _check_nonfinite(self, event: ChunkDone, now: float) -> None:
        bad_members = []
        for i, row in enumerate(event.rows):
            bad = [k for k, v in row.items() if k != NONFINITE_METRIC and not math.isfinite(v)]
            if row.get(NONFINITE_METRIC, 0.0) > 0:
                bad.insert(0, "policy parameters")
            if self.nonfinite_latch.update(i, bool(bad), now):
                bad_members.append((i, bad))
        if not bad_members:
            return
        stop = self.alerts.on_nonfinite == "stop"
        lines = []
        for i, bad in bad_members:
            who = _member_label(self.info.members, i) if self.info else f"member {i}"
            # the parameters and the first few metrics say enough; every metric goes NaN after them
            named = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
            lines.append(f"{who}: NaN/inf in {named} between env steps {self.prev_step} and {event.step}")
        if self.newest_checkpoint is None:
            resume = ", and no checkpoint was: a resume starts over"
        else:
            resume = f": a resume goes on from env step {self.newest_checkpoint}, its newest checkpoint"
        text = _some_members(lines) + (f"; stopping the run (its bad state is not saved{resume})" if stop else "")
        first = bad_members[0][0]
        who = f"member {first}" if len(bad_members) == 1 else f"{len(bad_members)} members"
        self.send(NONFINITE_RULE, f"NaN/inf in {who} at step {event.step}", text, first if len(bad_members) == 1 else None)
        if stop:
            raise Stopped(f"non-finite values: {'; '.join(lines)}", save=False)  # summary.json keeps every member

    def on_checkpoint(self, event: CheckpointDone) -> None:
        """Alerts on a failed checkpoint, once until one succeeds again: a run that trains on
        without saving loses all it trains since its newest checkpoint at its next preemption."""
        self.newest_checkpoint = event.kept[-1] if event.kept else None
        if not self.checkpoint_latch.update("run", event.path is None, time.monotonic()):
            return
        resume = ("over: it has no checkpoint" if self.newest_checkpoint is None
                  else f"from env step {self.newest_checkpoint}, its newest checkpoint")
        self.send(CHECKPOINT_RULE, f"checkpoint failed at step {event.step}",
                  f"the checkpoint at env step {event.step} could not be written ({event.error}); training goes on, "
                  f"but a resume after a preemption now starts {resume}")

    def on_exit(self, summary: dict[str, Any]) -> None:
        """Alerts for the run rules, writes the last heartbeat, pings the
        switch (success or fail), and flushes the queue (bounded wait)."""
        status = summary.get("status", "failed")
        self.status = status
        self.awaits_resume = stopped_resumably(summary) and summary.get("signal") == "SIGTERM"
        for rule in self.run_rules:
            if status in rule.when:
                self.send(rule, f"run {status}", _ending(summary))
        # summary values (summary/sps, summary/wall_s, ...) are one point, at the end
        values = {f"summary/{k}": v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for rule in self.metric_rules:
            value = values.get(rule.rule.metric)
            # a stopped run's summary lacks a finished run's values (sps): only a finished one tells
            if rule.rule.metric.startswith("summary/") and value is None and status == "finished":
                _unlogged(rule.name, rule.rule.metric, set(values))
            if isinstance(rule, Threshold) and value is not None and rule.check("summary", float(value), time.monotonic()):
                self.send(rule.rule, rule.name, f"{rule.name}: {rule.rule.metric} = {value:.4g} at the end of the run")
        # after the alerts are queued: their channels' threads send them while a
        # slow ping or watch endpoint keeps this thread waiting
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor.tick()  # the final heartbeat, with the run's status
            if self.ping_url:
                self.monitor.ping("" if status == "finished" else "/fail")
        self.dispatcher.close(self.alerts.flush_s)


def _earlier_id(run_dir: Path) -> str | None:
    """The id ("host:folder") in the heartbeat.json an earlier session of the run in `run_dir`
    left, if it names this folder: a copy of a run's folder (`cp -r a b`) is another run."""
    try:
        earlier = json.loads((run_dir / HEARTBEAT_FILE).read_text())
    except (OSError, ValueError):
        return None
    found = earlier.get("id") if isinstance(earlier, dict) else None
    return found if isinstance(found, str) and found.endswith(f":{run_dir.resolve()}") else None


def _some_members(lines: list[str]) -> str:
    """One line per member, joined: the first MEMBERS_NAMED, then a count (an SMS is short)."""
    more = f"; and {len(lines) - MEMBERS_NAMED} more members" if len(lines) > MEMBERS_NAMED else ""
    return "; ".join(lines[:MEMBERS_NAMED]) + more


def _unlogged(rule: str, metric: str, logged: set[str]) -> None:
    print(
        f"alerts: rule {rule!r} watches {metric!r}, which this run does not log, so it never fires; "
        f"logged: {', '.join(sorted(logged))}",
        file=sys.stderr,
        flush=True,
    )


def _ending(summary: dict[str, Any]) -> str:
    status = summary.get("status")
    text = f"{status} after {summary.get('env_steps', 0)} env steps in {summary.get('wall_s', 0):.0f} s"
    if "error" in summary:
        text += f": {summary['error']}"
    if "reason" in summary:
        text += f": {summary['reason']}"
    final = summary.get("final", {}).get("eval/return_mean")
    if final:
        text += f"; eval/return_mean per member: {', '.join(f'{x:.4g}' for x in final)}"
    return text


def alert_hooks(run: RunConfig, sinks: Sequence[Sink] = (), run_dir: Path | None = None) -> list[Hook]:
    """The hooks that give `run` its alerts (rules, channels, heartbeat);
    `sinks` are the run's sinks, for the wandb channel; `run_dir` the run's
    folder, named in an alert that comes before training starts (a failure)."""
    if run.alerts.rules and not run.alerts.channels:
        print(f"alerts: {len(run.alerts.rules)} rule(s) and no channel, so their alerts go nowhere; add one "
              "(alerts.channels=[console,...]), or give alerts=none for neither", file=sys.stderr, flush=True)
    dispatcher = Dispatcher(make_channels(run.alerts.channels, sinks), run.alerts.retries)
    return [AlertHook(run.alerts, dispatcher, run_dir)]

