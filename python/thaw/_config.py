"""The configuration of a function or class: Modal's decorator parameters,
validated and normalised into a JSON-able dict (Function.config), which goes
into app.json and the snapshot key.

Every parameter Modal accepts is accepted. Those thaw cannot honour are
warned about (thaw.exception.UnsupportedWarning, naming the parameter and
why) and listed under config["unsupported"]; a value equal to Modal's
default is accepted silently, since thaw already behaves that way.
"""

import hashlib
import json
import re
import sys
import zoneinfo

from . import gpu as _gpu
from ._secret import Secret
from ._state import warn
from ._volume import Volume
from .exception import DeprecatedWarning, InvalidError

DEFAULT_TIMEOUT = 300
DEFAULT_SCALEDOWN_WINDOW = 60

# Old Modal names → current ones.
ALIASES = {
    "concurrency_limit": "max_containers",
    "keep_warm": "min_containers",
    "container_idle_timeout": "scaledown_window",
    "checkpointing_enabled": "enable_memory_snapshot",
    "_experimental_buffer_containers": "buffer_containers",
}

# Parameters with no effect in thaw: name → why. Warned about unless the
# value is Modal's default (None, False or empty).
UNSUPPORTED = {
    "network_file_systems": "NetworkFileSystems do not exist in thaw; use volumes=",
    "ephemeral_disk": "containers write to the host's filesystem; there is no per-container "
                      "disk quota",
    "proxy": "thaw makes no outbound proxies",
    "cloud": "thaw runs on this host only",
    "region": "thaw runs on this host only",
    "routing_region": "thaw runs on this host only",
    "nonpreemptible": "thaw never preempts containers (they are nonpreemptible already)",
    "block_network": "containers share the host's network namespace",
    "restrict_modal_access": "there is no Modal API to restrict",
    "i6pn": "there is no private cluster network",
    "cloud_bucket_mounts": "cloud bucket mounts are not supported; use a Volume",
    "mounts": "functions run on the host's filesystem, where local files are already visible",
    "allow_cross_region_volumes": "thaw runs on this host only",
    "_experimental_restrict_output": "output is never restricted",
    "_experimental_scheduler_placement": "thaw runs on this host only",
    "_experimental_proxy_ip": "thaw makes no outbound proxies",
    "_experimental_custom_scaling_factor": "autoscaling is only min/max/buffer containers",
    "_experimental_gpus": "use gpu=",
    "tags": "thaw keeps no tags",
}

_GPU_RE = re.compile(r"^[A-Za-z0-9_]+(-[A-Za-z0-9]+)*(:[1-9][0-9]*)?$")


class Retries:
    """Retry policy for failed calls (thaw's client retries them)."""

    def __init__(self, *, max_retries, backoff_coefficient=2.0, initial_delay=1.0, max_delay=60.0):
        if not isinstance(max_retries, int) or not 0 <= max_retries <= 10:
            raise InvalidError("Retries(max_retries=...) must be an integer from 0 to 10")
        if not 1.0 <= backoff_coefficient <= 10.0:
            raise InvalidError("Retries(backoff_coefficient=...) must be from 1.0 to 10.0")
        if not 0.0 <= initial_delay <= 60.0:
            raise InvalidError("Retries(initial_delay=...) must be from 0 to 60 seconds")
        if not 1.0 <= max_delay <= 60.0:
            raise InvalidError("Retries(max_delay=...) must be from 1 to 60 seconds")
        self.max_retries = max_retries
        self.backoff_coefficient = float(backoff_coefficient)
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)

    def describe(self):
        return {"max_retries": self.max_retries, "backoff_coefficient": self.backoff_coefficient,
                "initial_delay": self.initial_delay, "max_delay": self.max_delay}

    def delay(self, attempt):
        """Seconds to wait before retry number `attempt` (1-based)."""
        return min(self.initial_delay * self.backoff_coefficient ** (attempt - 1), self.max_delay)


_PERIOD_UNITS = {"weeks": 7 * 86400, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


class Period:
    """Run a deployed function every so often (while `thaw serve` runs),
    the first time one period after the runtime picks up the deploy."""

    def __init__(self, **kwargs):
        for unit in ("years", "months"):
            if kwargs.get(unit):
                raise InvalidError(f"Period({unit}=...) has no fixed length; thaw cannot run it. "
                                   f"Use a Cron schedule (e.g. thaw.Cron('0 0 1 * *') for monthly)")
        unknown = set(kwargs) - set(_PERIOD_UNITS) - {"years", "months"}
        if unknown:
            raise InvalidError(f"Period() got unknown units {sorted(unknown)}; use "
                               f"{', '.join(_PERIOD_UNITS)}")
        self.kwargs = kwargs
        self.seconds = float(sum(_PERIOD_UNITS[u] * v for u, v in kwargs.items() if u in _PERIOD_UNITS))
        if self.seconds < 1:
            raise InvalidError(f"Period({self._args()}) is shorter than a second; thaw runs "
                               f"schedules at most once a second")

    def _args(self):
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())

    def describe(self):
        return {"period_s": self.seconds}

    def __repr__(self):
        return f"Period({self._args()})"


class Cron:
    """Run a deployed function at the minutes a cron expression names
    (minute hour day-of-month month day-of-week) in `timezone` (an IANA name,
    default UTC), while `thaw serve` runs."""

    def __init__(self, cron_string, timezone="UTC"):
        shorthand = cron_string in ("@yearly", "@annually", "@monthly", "@weekly", "@daily",
                                    "@midnight", "@hourly")
        if not shorthand and (not isinstance(cron_string, str) or len(cron_string.split()) != 5):
            raise InvalidError(f"Cron({cron_string!r}): a cron expression has 5 fields: minute "
                               f"hour day-of-month month day-of-week (e.g. '0 9 * * mon-fri')")
        self.cron_string = cron_string
        self.timezone = timezone
        try:  # the runtime reads the same zoneinfo files (tzdata)
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidError(f"Cron({cron_string!r}, timezone={timezone!r}): unknown time zone; use an "
                               f"IANA name such as 'America/New_York' or 'UTC'") from None

    def describe(self):
        return {"cron": self.cron_string, "timezone": self.timezone}

    def __repr__(self):
        return f"Cron({self.cron_string!r})"


def _is_default(value):
    return value is None or value is False or (hasattr(value, "__len__") and len(value) == 0)


def normalise_gpu(value, where):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        return [normalise_gpu(v, where) for v in value]
    if isinstance(value, _gpu._GPU):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidError(f"{where}: gpu= must be a string like 'A100' or 'H100:2', got {value!r}")
    spec = value.strip()
    if spec.lower() == "any":
        return "ANY"
    if not _GPU_RE.match(spec):
        raise InvalidError(f"{where}: invalid gpu={value!r}; use a type with an optional count, "
                           f"like 'A10G', 'A100-80GB' or 'H100:2'")
    return spec.upper()


def _resource(value, name, where, unit):
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InvalidError(f"{where}: {name}= takes a number or a (request, limit) pair")
        req, lim = value
    else:
        req, lim = value, None
    for v in (req, lim):
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
            raise InvalidError(f"{where}: {name}= values must be positive numbers ({unit})")
    if lim is not None and lim < req:
        raise InvalidError(f"{where}: {name}= limit {lim} is below the request {req}")
    return {"request": req, "limit": lim} if lim is not None else {"request": req}


def _positive(value, name, where, allow_none=True, integer=False, minimum=0):
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise InvalidError(f"{where}: {name}= must be {kind} >= {minimum}, got {value!r}")
    return value


def _truthy(v):
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def inputs_at_once(config):
    """Inputs one container is sent at once: max_concurrent_inputs
    (@concurrent), or the batch size (@batched gathers inputs in flight
    together). The runtime's FunctionDesc::inputs_at_once is the same rule."""
    batch = (config.get("batched") or {}).get("max_batch_size") or 1
    return max(int(config.get("max_concurrent_inputs") or 1), int(batch), 1)


def _mount_path(path, where):
    """A Volume's mount path, checked, without a trailing /."""
    if not path.startswith("/") or path.rstrip("/") == "" or ".." in path.split("/"):
        raise InvalidError(f"{where}: volume mount path {path!r} must be an absolute path "
                           f"other than /")
    return path.rstrip("/")


def build(kind, name, kwargs, app=None, partial_params=None):
    """(config, image, secrets, volumes) for one @app.function or @app.cls.

    kwargs: the decorator's keyword arguments; app: the App, whose image,
    secrets and volumes are the defaults; partial_params: what
    @concurrent/@batched added."""
    where = f"{kind} '{name}'"
    kw = dict(kwargs)
    unsupported = {}

    def unsupported_param(param, why, value):
        warn(f"thaw: {where}: {param}={value!r} is not supported: {why}. The parameter is "
             f"accepted and has no effect.")
        unsupported[param] = why

    for old, new in ALIASES.items():
        if old in kw:
            value = kw.pop(old)
            warn(f"thaw: {where}: {old}= is Modal's old name for {new}=; using it as {new}=",
                 DeprecatedWarning)
            kw.setdefault(new, value)

    image = kw.pop("image", None)
    if image is None and app is not None:
        image = app.image
    if image is None:
        from ._image import Image
        image = Image.debian_slim()

    secrets = list(app._secrets) if app is not None else []
    for s in kw.pop("secrets", None) or []:
        if not isinstance(s, Secret):
            raise InvalidError(f"{where}: secrets= must be a list of thaw.Secret, got {s!r}")
        secrets.append(s)

    volumes = dict(app._volumes) if app is not None else {}
    for path, vol in (kw.pop("volumes", None) or {}).items():
        volumes[str(path)] = vol
    vol_names = {}
    for path, vol in sorted(volumes.items()):
        if not isinstance(vol, Volume):
            unsupported_param(f"volumes[{path!r}]", "only thaw.Volume can be mounted", vol)
            continue
        vol_names[_mount_path(path, where)] = vol.name
    volumes = {p: v for p, v in volumes.items() if isinstance(v, Volume)}
    read_only_volumes = sorted(_mount_path(p, where) for p, v in volumes.items() if v._read_only)

    env = kw.pop("env", None) or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
        raise InvalidError(f"{where}: env= must be a dict of variable names to strings")
    env = {k: (None if v is None else str(v)) for k, v in env.items()}

    gpu = normalise_gpu(kw.pop("gpu", None), where)

    exp = kw.pop("experimental_options", None) or {}
    if not isinstance(exp, dict):
        raise InvalidError(f"{where}: experimental_options= must be a dict")
    # As given when JSON can hold it (Modal str()-coerces; thaw keeps true as true).
    exp = {str(k): (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
           for k, v in exp.items()}
    enable_gpu_snapshot = False
    for key, value in exp.items():
        if key in ("enable_gpu_snapshot", "_experimental_enable_gpu_snapshot"):
            enable_gpu_snapshot = _truthy(value)
        else:
            unsupported_param(f"experimental_options[{key!r}]", "thaw knows no such option", value)
    if kw.pop("_experimental_enable_gpu_snapshot", False):
        enable_gpu_snapshot = True

    enable_memory_snapshot = bool(kw.pop("enable_memory_snapshot", False))
    if enable_gpu_snapshot and not enable_memory_snapshot:
        warn(f"thaw: {where}: enable_gpu_snapshot has no effect without "
             f"enable_memory_snapshot=True")
    if enable_gpu_snapshot and gpu is None:
        warn(f"thaw: {where}: enable_gpu_snapshot has no effect without gpu=")

    cpu = _resource(kw.pop("cpu", None), "cpu", where, "cores")
    memory = _resource(kw.pop("memory", None), "memory", where, "MiB")
    timeout = _positive(kw.pop("timeout", None), "timeout", where, minimum=1)
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    startup_timeout = _positive(kw.pop("startup_timeout", None), "startup_timeout", where,
                                minimum=1)
    min_containers = _positive(kw.pop("min_containers", None), "min_containers", where,
                               integer=True) or 0
    max_containers = _positive(kw.pop("max_containers", None), "max_containers", where,
                               integer=True, minimum=1)
    buffer_containers = _positive(kw.pop("buffer_containers", None), "buffer_containers", where,
                                  integer=True) or 0
    scaledown_window = _positive(kw.pop("scaledown_window", None), "scaledown_window", where,
                                 minimum=1)
    schedule = kw.pop("schedule", None)
    if schedule is not None and not isinstance(schedule, (Period, Cron)):
        raise InvalidError(f"{where}: schedule= must be thaw.Period(...) or thaw.Cron(...), "
                           f"got {schedule!r}")
    single_use = bool(kw.pop("single_use_containers", False))
    max_inputs = _positive(kw.pop("max_inputs", None), "max_inputs", where, integer=True, minimum=1)
    if single_use and max_inputs not in (None, 1):
        raise InvalidError(f"{where}: single_use_containers=True (one input per container) "
                           f"contradicts max_inputs={max_inputs}; give one of them")
    if max_inputs is not None:
        warn(f"thaw: {where}: max_inputs= is deprecated in Modal; use single_use_containers=True "
             f"(thaw honours max_inputs={max_inputs})", DeprecatedWarning)
    if single_use:
        max_inputs = 1
    if max_containers is not None and min_containers > max_containers:
        raise InvalidError(f"{where}: min_containers={min_containers} is above "
                           f"max_containers={max_containers}")

    retries = kw.pop("retries", None)
    if isinstance(retries, int) and not isinstance(retries, bool):
        retries = Retries(max_retries=retries, initial_delay=1.0, backoff_coefficient=1.0)
    if retries is not None and not isinstance(retries, Retries):
        raise InvalidError(f"{where}: retries= must be an int or thaw.Retries")

    serialized = bool(kw.pop("serialized", False))
    if serialized:
        from . import _protocol
        if _protocol.cloudpickle is None:
            # Plain pickle sends functions by name, which is what
            # serialized=True exists to avoid: refuse now, not in a container.
            raise InvalidError(f"{where}: serialized=True sends the {kind} itself to its "
                               f"containers with cloudpickle, which this Python "
                               f"({sys.executable}) cannot import: apt-get install "
                               f"python3-cloudpickle")
    include_source = kw.pop("include_source", None)
    if include_source is False:
        unsupported_param("include_source", "the container always runs the app file itself",
                          False)
    is_generator = kw.pop("is_generator", None)
    kw.pop("name", None)  # the caller has used it already

    max_concurrent_inputs = (partial_params or {}).get("max_concurrent_inputs", 1)
    target_concurrent_inputs = (partial_params or {}).get("target_concurrent_inputs")
    # Modal 1.x still honours its old parameter (deprecated): N inputs per
    # container, as @concurrent(max_inputs=N) gives.
    allow_concurrent = kw.pop("allow_concurrent_inputs", None)
    if allow_concurrent is not None:
        allow_concurrent = _positive(allow_concurrent, "allow_concurrent_inputs", where,
                                     integer=True, minimum=1)
        if "max_concurrent_inputs" in (partial_params or {}):
            warn(f"thaw: {where}: allow_concurrent_inputs={allow_concurrent} is ignored: "
                 f"@concurrent(max_inputs={max_concurrent_inputs}) is given", DeprecatedWarning)
        else:
            warn(f"thaw: {where}: allow_concurrent_inputs= is Modal's old form of "
                 f"@concurrent(max_inputs=...); using it as @concurrent(max_inputs="
                 f"{allow_concurrent})", DeprecatedWarning)
            max_concurrent_inputs = allow_concurrent
    batched = None
    if partial_params and "max_batch_size" in partial_params:
        batched = {"max_batch_size": partial_params["max_batch_size"],
                   "wait_ms": partial_params["wait_ms"]}

    for param in list(kw):
        value = kw.pop(param)
        if param in UNSUPPORTED:
            if not _is_default(value):
                unsupported_param(param, UNSUPPORTED[param], value)
        else:
            unsupported_param(param, "thaw does not know this parameter", value)

    config = {
        "kind": kind,
        "name": name,
        "enable_memory_snapshot": enable_memory_snapshot,
        "enable_gpu_snapshot": enable_gpu_snapshot,
        "gpu": gpu,
        "cpu": cpu,
        "memory": memory,
        "timeout": timeout,
        "startup_timeout": startup_timeout if startup_timeout is not None else timeout,
        "min_containers": min_containers,
        "max_containers": max_containers,
        "buffer_containers": buffer_containers,
        "max_inputs": max_inputs,
        "schedule": schedule.describe() if schedule is not None else None,
        "scaledown_window": scaledown_window if scaledown_window is not None
        else DEFAULT_SCALEDOWN_WINDOW,
        "retries": retries.describe() if retries else None,
        "max_concurrent_inputs": max_concurrent_inputs,
        "target_concurrent_inputs": target_concurrent_inputs,
        "batched": batched,
        # @fastapi_endpoint/@web_endpoint/@asgi_app/@wsgi_app: served over HTTP.
        "web_endpoint": (partial_params or {}).get("web") or None,
        "is_generator": is_generator,
        "volumes": vol_names,
        **({"read_only_volumes": read_only_volumes} if read_only_volumes else {}),
        "secrets": [s.describe(resolve=False) for s in secrets],
        "env": env,
        "experimental_options": exp,
        "serialized": serialized,
        "unsupported": unsupported,
    }
    return config, image, secrets, volumes


def one_container_for_web_server(config, web_kinds, where):
    """A @web_server function's server listens on a port of the host
    (containers share its network), so its containers run one at a time."""
    if "web_server" not in web_kinds:
        return
    why = "a @web_server's server listens on a port of the host, which one container at a time can hold"
    for param, most in (("max_containers", 1), ("min_containers", 1), ("buffer_containers", 0)):
        asked = config.get(param)
        if asked is not None and asked > most:
            warn(f"thaw: {where}: {param}={asked} is lowered to {most}: {why}")
            config[param] = most
    config["max_containers"] = 1


# Cls.with_options(...): what may be changed per handle, as in Modal.
OPTION_NAMES = ("cpu", "memory", "gpu", "env", "secrets", "volumes", "retries", "max_containers",
                "buffer_containers", "scaledown_window", "timeout")


def options(where, kwargs):
    """Cls.with_options(**kwargs) checked and converted to what the runtime
    applies to the deployed configuration: {"config": {...}, "env": {...},
    "volumes": {mount path: Volume name}} (only what was given)."""
    kwargs = dict(kwargs)
    # Modal's older names, and settings that mean nothing on one host.
    for old, new in (("concurrency_limit", "max_containers"),
                     ("container_idle_timeout", "scaledown_window")):
        if old in kwargs:
            warn(f"thaw: {where}.with_options({old}=...) is Modal's old name for {new}=",
                 DeprecatedWarning)
            kwargs.setdefault(new, kwargs.pop(old))
    concurrent = kwargs.pop("allow_concurrent_inputs", None)
    if concurrent is not None:
        warn(f"thaw: {where}.with_options(allow_concurrent_inputs=...) is deprecated in Modal; "
             f"use .with_concurrency(max_inputs=...)", DeprecatedWarning)
    for param in ("region", "cloud"):
        if kwargs.pop(param, None) is not None:
            warn(f"thaw: {where}.with_options({param}=...) is not supported: one host")
    unknown = sorted(set(kwargs) - set(OPTION_NAMES))
    if unknown:
        raise InvalidError(f"{where}.with_options() takes no {', '.join(unknown)} (it takes "
                           f"{', '.join(OPTION_NAMES)})")
    out = {"config": {}, "env": {}, "volumes": {}}
    cfg = out["config"]
    if concurrent is not None:
        cfg["max_concurrent_inputs"] = _positive(concurrent, "allow_concurrent_inputs", where,
                                                 integer=True, minimum=1)
    if kwargs.get("gpu") is not None:
        cfg["gpu"] = normalise_gpu(kwargs["gpu"], where)
    for name, unit in (("cpu", "cores"), ("memory", "MiB")):
        if kwargs.get(name) is not None:
            cfg[name] = _resource(kwargs[name], name, where, unit)
    if kwargs.get("timeout") is not None:
        cfg["timeout"] = _positive(kwargs["timeout"], "timeout", where, minimum=1)
    if kwargs.get("max_containers") is not None:
        cfg["max_containers"] = _positive(kwargs["max_containers"], "max_containers", where,
                                          integer=True, minimum=1)
    if kwargs.get("buffer_containers") is not None:
        cfg["buffer_containers"] = _positive(kwargs["buffer_containers"], "buffer_containers",
                                             where, integer=True)
    if kwargs.get("scaledown_window") is not None:
        cfg["scaledown_window"] = _positive(kwargs["scaledown_window"], "scaledown_window", where,
                                            minimum=1)
    retries = kwargs.get("retries")
    if retries is not None:
        if isinstance(retries, int) and not isinstance(retries, bool):
            retries = Retries(max_retries=retries, initial_delay=1.0, backoff_coefficient=1.0)
        if not isinstance(retries, Retries):
            raise InvalidError(f"{where}.with_options(retries=...) must be an int or thaw.Retries")
        cfg["retries"] = retries.describe()
    for s in kwargs.get("secrets") or []:
        if not isinstance(s, Secret):
            raise InvalidError(f"{where}.with_options(secrets=...) must be a list of thaw.Secret, "
                               f"got {s!r}")
        out["env"].update(s.resolve())
    env = kwargs.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
        raise InvalidError(f"{where}.with_options(env=...) must be a dict of variable names to "
                           f"strings")
    out["env"].update({k: (None if v is None else str(v)) for k, v in env.items()})
    for path, vol in (kwargs.get("volumes") or {}).items():
        path = str(path)
        if not isinstance(vol, Volume):
            raise InvalidError(f"{where}.with_options(volumes=...): only thaw.Volume can be "
                               f"mounted, got {vol!r} at {path!r}")
        # The runtime takes a name (read-write) or, for vol.read_only(), an
        # object saying so; either way the handle's mount replaces the
        # deployed one at that path.
        out["volumes"][_mount_path(path, where)] = \
            {"name": vol.name, "read_only": True} if vol._read_only else vol.name
    return out


def merge_options(old, new):
    """Options of a handle made from another with more options: later wins."""
    old = old or {"config": {}, "env": {}, "volumes": {}}
    return {k: {**old.get(k, {}), **new.get(k, {})} for k in ("config", "env", "volumes")}


def finish(config):
    """The config as stored: keys whose value is None are left out (readers
    take their defaults), so no reader meets a JSON null."""
    return {k: v for k, v in config.items() if v is not None}


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha256_json(obj):
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
