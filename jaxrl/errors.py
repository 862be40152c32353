"""Exceptions users see, and how a failure (or a warning) is told in one line."""

import os
import re
import warnings
from pathlib import Path

RESUMABLE_EXIT = 75
"""The CLI's exit status for a run that stopped early and can be resumed
(EX_TEMPFAIL from sysexits.h: "try again later")."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message says which and why."""


class UnknownEnv(ConfigError):
    """An env name its suite does not have (`jaxrl.envs.make_env` adds where it is)."""


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM) turned into an exception, so that it ends
    a run the way Ctrl-C does: outputs kept, summary written, sinks closed.

    A KeyboardInterrupt, so every `except KeyboardInterrupt` treats both alike.
    `signum` is the signal's number (the exit status is 128 + signum).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Stopped(Exception):
    """The run stopped early on purpose and can be resumed: a first SIGINT or
    SIGTERM asked it to, or a hook (an alert rule seeing a NaN) did.

    Raised from a hook, between chunks. The runner then writes a checkpoint
    of the state after the last chunk when `save` is true (False when that
    state is bad, e.g. holds NaNs: the previous checkpoint stays the resume
    point), writes summary.json with status "stopped" and `reason` (and
    `bad_state` when `save` is false, and `signal`, the name of the signal
    that asked for the stop in any process, when one did), closes the sinks,
    and re-raises; the CLI exits with RESUMABLE_EXIT. `resumable` turns false where checkpoints
    are off (`checkpoint.enabled=false`) and the run folder holds none: the
    exit status stays, "try again later", but a resume starts over.
    """

    def __init__(self, reason: str, save: bool = True, signal: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.save = save
        self.signal = signal
        self.resumable = True


def last_line(err: BaseException) -> str:
    """'<Type>: <last line of the message>', the one line a summary or the CLI gives for `err`."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"


_PACKAGE_DIR = f"{Path(__file__).resolve().parent}{os.sep}"
_python_format_warning = warnings.formatwarning


def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """jaxrl's own warnings as one `warning: ...` line, as its errors are `error: ...`: their file
    and source line would only show jaxrl's insides. Other libraries' warnings as Python prints them.
    The command lines (`jaxrl.train`, `jaxrl.film`) install it as `warnings.formatwarning`."""
    if str(Path(filename).resolve()).startswith(_PACKAGE_DIR):
        # one line, whatever another library's error text quoted in it holds (pydantic's spans four)
        one_line = re.sub(r"\s*\n\s*", " ", str(message).strip())
        return f"warning: {one_line}\n"
    return _python_format_warning(message, category, filename, lineno, line)
