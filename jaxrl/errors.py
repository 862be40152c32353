"""Exceptions users see, and how a failure is told in one line."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message says which and why."""


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM) turned into an exception, so that it ends
    a run the way Ctrl-C does: outputs kept, summary written, sinks closed.

    A KeyboardInterrupt, so every `except KeyboardInterrupt` treats both alike.
    `signum` is the signal's number (the exit status is 128 + signum).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def last_line(err: BaseException) -> str:
    """'<Type>: <last line of the message>', the one line a summary or the CLI gives for `err`."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"
