"""Modal's `modal.config` module: `config`, the client's settings, and
`logger`, the SDK's logger.

thaw's settings live in the environment, as Modal's MODAL_* variables do:
`config[key]` reads them at each access, and `config.override_locally(key,
value)` sets the variable, so the thaw commands and containers this process
starts see the value too. Modal settings that mean nothing on one host
(tokens, server URLs, ...) are refused with the reason, never answered with
a made-up value.
"""

import logging
import os

from .exception import InvalidError

# key → (environment variables, first wins; default; what it is)
_SETTINGS = {
    "loglevel": (("THAW_LOGLEVEL", "MODAL_LOGLEVEL"), "WARNING", "the level of `logger`"),
    "thaw_home": (("THAW_HOME",), "/var/lib/thaw",
                  "the store: deployed apps, snapshots, volumes, secrets"),
    "runtime_socket": (("THAW_RUNTIME_SOCKET",), None,
                       "the `thaw serve` socket calls go to (None: the SDK starts one)"),
    "thaw_bin": (("THAW_BIN",), None, "the thaw binary (None: <repo>/build/thaw or PATH)"),
    "task_id": (("MODAL_TASK_ID",), None, "in a container: ta-<container id>"),
    "environment": (("MODAL_ENVIRONMENT",), "main", "thaw has one environment per THAW_HOME"),
}
_READ_ONLY = {
    "task_id": "the runtime names each container",
    "environment": "thaw has a single environment per THAW_HOME",
}
_MODAL_ONLY = {
    **dict.fromkeys(("server_url", "token_id", "token_secret", "profile", "workspace"),
                    "thaw talks to a local runtime, with no account, token or server"),
    **dict.fromkeys(("image_builder_version", "force_build", "ignore_cache", "build_validation"),
                    "thaw builds no images"),
    **dict.fromkeys(("automount", "sync_entrypoint", "serve_timeout", "logs_timeout",
                     "heartbeat_interval", "function_runtime", "function_runtime_debug",
                     "image_id", "snapshot_debug", "cuda_checkpoint_path", "strict_parameters",
                     "traceback", "async_warnings"),
                    "thaw has no such setting"),
}


def _unknown(key):
    why = _MODAL_ONLY.get(key, "thaw has no such setting")
    return KeyError(f"thaw.config has no setting {key!r} ({why}); it has: {', '.join(_SETTINGS)}")


class Config:
    """Modal's config object, read from the environment at each access."""

    def get(self, key, profile=None, use_env=True):
        if key not in _SETTINGS:
            raise _unknown(key)
        names, default, _ = _SETTINGS[key]
        if use_env:
            for name in names:
                if os.environ.get(name):
                    return os.environ[name]
        return default

    def __getitem__(self, key):
        return self.get(key)

    def __contains__(self, key):
        return key in _SETTINGS

    def __iter__(self):
        return iter(_SETTINGS)

    def keys(self):
        return list(_SETTINGS)

    def to_dict(self):
        return {k: self.get(k) for k in _SETTINGS}

    def override_locally(self, key, value):
        """Set a setting for this process and what it starts (its variable in
        os.environ)."""
        if key not in _SETTINGS:
            raise _unknown(key)
        if key in _READ_ONLY:
            raise InvalidError(f"thaw.config[{key!r}] cannot be set: {_READ_ONLY[key]}")
        if key == "loglevel":
            _set_level(str(value))
        os.environ[_SETTINGS[key][0][0]] = str(value)

    def __repr__(self):
        return f"thaw.config.Config({self.to_dict()})"


def _set_level(name):
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise InvalidError(f"thaw.config loglevel {name!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    logger.setLevel(level)


config = Config()

logger = logging.getLogger("thaw")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("[%(threadName)s] %(asctime)s %(message)s"))
    logger.addHandler(_handler)
try:
    _set_level(config["loglevel"])
except InvalidError:  # a bad THAW_LOGLEVEL must not stop `import thaw.config`
    logger.setLevel(logging.WARNING)
    logger.warning("thaw: loglevel %r is not a logging level; using WARNING", config["loglevel"])

__all__ = ["Config", "config", "logger"]
