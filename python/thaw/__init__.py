"""thaw: Modal-compatible functions with memory snapshots, on your own machine.

    import thaw as modal

    app = modal.App("example")

    @app.cls(enable_memory_snapshot=True, gpu="a10g")
    class Embedder:
        @modal.enter(snap=True)
        def load(self): ...
        @modal.method()
        def run(self, x): ...

The SDK describes apps (App, function, cls, Image, Volume, Secret), talks to
the thaw runtime (the `thaw` binary) to run calls in containers, and holds
the worker loop that runs inside each container (thaw._worker). Standard
library only. Reference: docs/sdk.md; wire protocol: docs/runtime-protocol.md.
"""

__version__ = "0.1.0"

from . import exception, gpu  # noqa: E402
from ._app import App, LocalEntrypoint, Stub  # noqa: E402
from ._config import Cron, Period, Retries  # noqa: E402
from ._dict import Dict  # noqa: E402
from ._functions import Cls, Function, FunctionCall, Obj  # noqa: E402
from ._image import Image  # noqa: E402
from ._partial import (asgi_app, batched, concurrent, enter, exit, fastapi_endpoint,  # noqa: E402
                       method, parameter, web_endpoint, web_server, wsgi_app)
from ._queue import Queue  # noqa: E402
from ._secret import Secret  # noqa: E402
from ._state import current_input_id  # noqa: E402
from ._volume import Volume  # noqa: E402
from .exception import Error  # noqa: E402

__all__ = [
    "App", "Stub", "Image", "Volume", "Secret", "Dict", "Queue", "Cls", "Function",
    "FunctionCall", "Obj",
    "LocalEntrypoint", "Retries", "Period", "Cron", "enter", "exit", "method", "concurrent",
    "batched", "parameter", "web_endpoint", "fastapi_endpoint", "asgi_app", "wsgi_app",
    "web_server", "gpu", "exception", "Error", "is_local", "current_input_id",
    "current_function_call_id", "enable_output", "interact", "__version__",
]


def is_local():
    """False inside a function container, True elsewhere."""
    from . import _state
    return not _state.in_container


def current_function_call_id():
    """The id of the call being served (inside a container), else None."""
    cid = current_input_id()
    return None if cid is None else "fc-" + cid[len("in-"):]


def enable_output(*args, **kwargs):
    """A no-op context manager (thaw's runtime logs to stderr always)."""
    import contextlib
    return contextlib.nullcontext()


def interact():
    """A no-op: thaw containers have no interactive terminal."""


_NOT_PROVIDED = {
    "Sandbox": "thaw runs functions, not sandboxes",
    "NetworkFileSystem": "use thaw.Volume",
    "CloudBucketMount": "use thaw.Volume",
    "Proxy": "thaw makes no outbound proxies",
    "Tunnel": "thaw has no tunnels",
    "forward": "thaw has no tunnels",
    "Mount": "functions run on the host's filesystem, where local files are visible",
    "Environment": "thaw has a single environment per THAW_HOME",
    "SchedulerPlacement": "thaw runs on this host only",
}


def __getattr__(name):
    if name in _NOT_PROVIDED:
        raise AttributeError(f"thaw does not provide modal.{name}: {_NOT_PROVIDED[name]}")
    raise AttributeError(f"module 'thaw' has no attribute {name!r}")
