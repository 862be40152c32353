"""Exceptions users see."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message says which and why."""
