"""Secret: environment variables handed to a function's container.

Secret.from_name(name) looks the values up, in this order:
  1. $THAW_HOME/secrets/<name>.env (KEY=VALUE lines) or <name>.json (an object);
  2. the environment variable THAW_SECRET_<NAME> holding a JSON object
     (<NAME> upper-cased, other characters than letters and digits as '_');
  3. the variables listed in required_keys, from the environment of the
     process that deploys or runs the app.
Values are resolved when the app is deployed or run (thaw._introspect puts
them in the function's "env"), and a digest of them is in the snapshot key.
"""

import hashlib
import json
import os
import re
from pathlib import Path

from ._state import warn
from ._volume import check_name, thaw_home
from .exception import InvalidError, NotFoundError


def parse_dotenv(text):
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        if "=" not in line:
            continue
        k, v = line.split("=", 1)
        k, v = k.strip(), v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        env[k] = v
    return env


def _check_env(env, what):
    if not isinstance(env, dict):
        raise InvalidError(f"{what} must be a dict of names to string values")
    out = {}
    for k, v in env.items():
        if not isinstance(k, str) or not k or "=" in k:
            raise InvalidError(f"{what}: invalid variable name {k!r}")
        if v is not None and not isinstance(v, str):
            raise InvalidError(f"{what}: the value of {k} must be a string, got {type(v).__name__}")
        out[k] = v
    return out


class Secret:
    def __init__(self, name=None, env=None, required_keys=(), source="dict"):
        self.name = name
        self._env = env
        self.required_keys = list(required_keys)
        self.source = source

    @staticmethod
    def from_dict(env_dict={}):  # noqa: B006 - Modal's signature
        """A secret given inline. A value of None unsets the variable."""
        return Secret(env=_check_env(dict(env_dict), "Secret.from_dict"))

    @staticmethod
    def from_name(name, *, environment_name=None, required_keys=(), client=None):
        """A named secret (see the module docstring for where it is looked up)."""
        if environment_name is not None:
            warn(f"thaw: Secret.from_name(environment_name={environment_name!r}) is ignored: "
                 "thaw has a single environment per THAW_HOME")
        return Secret(name=check_name("Secret", name), required_keys=required_keys, source="name")

    lookup = from_name

    @staticmethod
    def from_local_environ(env_keys):
        """The named variables, taken from the environment of the process that
        deploys or runs the app."""
        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise InvalidError(f"Secret.from_local_environ: not set in the environment: "
                               f"{', '.join(missing)}")
        return Secret(env={k: os.environ[k] for k in env_keys})

    @staticmethod
    def from_dotenv(path=None, *, filename=".env"):
        """The variables of a .env file (path: a file or the directory holding it)."""
        p = Path(path) if path else Path.cwd()
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise NotFoundError(f"Secret.from_dotenv: no file {p}")
        return Secret(env=parse_dotenv(p.read_text()))

    def resolve(self):
        """The variables as a dict; raises NotFoundError for a named secret that
        cannot be found, or whose required keys are missing."""
        if self._env is not None:
            return dict(self._env)
        env = self._lookup_store()
        if env is None:
            if self.required_keys and all(k in os.environ for k in self.required_keys):
                env = {k: os.environ[k] for k in self.required_keys}
            else:
                home = thaw_home() / "secrets"
                raise NotFoundError(
                    f"Secret '{self.name}' not found: create it with `thaw secret create "
                    f"{self.name} KEY=VALUE ...` (as with `modal secret create`), or write "
                    f"{home}/{self.name}.env with KEY=VALUE lines, set THAW_SECRET_{self._var()} to "
                    f"a JSON object, or list required_keys=[...] and set them in the environment")
        missing = [k for k in self.required_keys if k not in env]
        if missing:
            raise NotFoundError(
                f"Secret '{self.name}' lacks required keys: {', '.join(missing)} (it has: "
                f"{', '.join(sorted(env)) or 'none'}); add them with `thaw secret create "
                f"{self.name} KEY=VALUE ... --force` (which replaces the secret: give every key)")
        return env

    def _var(self):
        return re.sub(r"[^A-Za-z0-9]", "_", self.name).upper()

    def _lookup_store(self):
        home = thaw_home() / "secrets"
        envfile, jsonfile = home / f"{self.name}.env", home / f"{self.name}.json"
        if envfile.is_file():
            return parse_dotenv(envfile.read_text())
        if jsonfile.is_file():
            return _check_env(json.loads(jsonfile.read_text()), str(jsonfile))
        raw = os.environ.get(f"THAW_SECRET_{self._var()}")
        if raw:
            try:
                return _check_env(json.loads(raw), f"THAW_SECRET_{self._var()}")
            except ValueError as e:
                raise InvalidError(f"THAW_SECRET_{self._var()} is not a JSON object: {e}") from None
        return None

    def describe(self, resolve=True):
        """{"name", "keys", "sha256"}: what the config (and the snapshot key)
        holds of a secret — its keys and a digest of its values, not the values."""
        d = {"name": self.name, "source": self.source}
        if resolve:
            env = self.resolve()
            d["keys"] = sorted(env)
            d["sha256"] = hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()
        return d

    def __repr__(self):
        return f"Secret({self.name!r})" if self.name else "Secret(<dict>)"
