"""httpsd's own module for `.py` generators: the manifest's values.

    import httpsd
    site = httpsd.config("site", "dc1")      # [config] site = "dc1"
    token = httpsd.secret("token")           # [secrets] token = { env = "..." }

Values are strings (the manifest's numbers and booleans too). A secret's value is
removed from everything the run leaves behind: its logs, its error and `?debug=true`.
"""

from wit_world.imports import config as _config

__all__ = ["config", "config_all", "secret"]


def config(key, default=None):
    """The manifest's `[config]` value of `key`, or `default`."""
    value = _config.get(key)
    return default if value is None else value


def config_all():
    """Every `[config]` value, as a dict."""
    return dict(_config.all())


def secret(key, default=None):
    """The manifest's `[secrets]` value of `key`, or `default`."""
    value = _config.secret(key)
    return default if value is None else value
