"""Process-wide state of the SDK: how .remote() calls are routed, and whether
this process is a container's worker.

mode:
  None         plain process: .remote() calls deployed apps
  "ephemeral"  inside `thaw run` (thaw._entrypoint) or `with app.run():`
               .remote() sends mode "ephemeral" and the app file
  "worker"     this process is a function container's worker
"""

import contextvars
import os
import sys
import threading
import warnings
from pathlib import Path

PACKAGE_DIR = str(Path(__file__).resolve().parent)

mode = os.environ.get("THAW_APP_MODE") or None
app_file = None          # absolute path of the app file, when known
in_container = False     # set by thaw._worker
# In a container (thaw.experimental): inputs it is sent at once, and whether
# its code asked it to take no more (its answers then say so to the runtime).
input_concurrency = 1
stop_fetching_inputs = False
_local = threading.local()


# For code the call runs on the worker's event loop or in threads it starts
# with the context copied (an ASGI app's tasks, FastAPI's thread pool):
# they are not the thread that serves the call.
_context_input_id = contextvars.ContextVar("thaw_input_id", default=None)


def current_input_id():
    """The id of the call being served by this thread (in a container), else None."""
    return getattr(_local, "input_id", None) or _context_input_id.get()


def set_input_id(value):
    _local.input_id = value


def set_context_input_id(value):
    """The input id for the current context (a task, and what copies its context)."""
    _context_input_id.set(value)


def _user_stacklevel():
    """warnings.warn stacklevel pointing at the first frame outside thaw."""
    f = sys._getframe(2)  # the caller of warn()
    level = 2
    while f is not None and str(Path(f.f_code.co_filename).resolve()).startswith(PACKAGE_DIR):
        f = f.f_back
        level += 1
    return level


def warn(message, category=None):
    """A warning attributed to the user's line that caused it."""
    if category is None:
        from .exception import UnsupportedWarning
        category = UnsupportedWarning
    warnings.warn(message, category, stacklevel=_user_stacklevel())
