"""Function.get_current_stats(): how many inputs wait and how many
containers run, as the runtime the caller talks to counts them."""

import dataclasses

from . import _client
from .exception import ExecutionError, NotFoundError


@dataclasses.dataclass(frozen=True)
class FunctionStats:
    """Modal's FunctionStats. backlog: inputs not yet taken by a container
    (none had room, or the one started for them is still starting);
    num_total_runners: the function's containers, up or starting, busy or idle."""

    backlog: int
    num_total_runners: int


def current_stats(obj):
    """The stats of a Function or Cls (every handle and parameter set of a
    class counts) in the runtime this process calls through."""
    reply = obj._query("stats", id=_client.next_id())
    if reply.get("type") == "error":
        # The runtime says what is missing (not deployed, stopped, no such
        # function) and what to do.
        raise NotFoundError(f"{obj._name}.get_current_stats(): {reply.get('error')}")
    if reply.get("type") != "stats":
        raise ExecutionError(f"{obj._name}.get_current_stats(): unexpected reply from the runtime: "
                             f"{reply}")
    return FunctionStats(backlog=int(reply["backlog"]), num_total_runners=int(reply["num_total_runners"]))
