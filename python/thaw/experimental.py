"""Modal's `modal.experimental` module, as far as it means something on one
host: a container can stop taking inputs, and tell how many it takes at
once. The rest (clusters, raw images, ...) raise an AttributeError naming
what is missing and why, rather than doing nothing."""

from . import _state
from .exception import InvalidError


def _in_container(name):
    if not _state.in_container:
        raise InvalidError(f"thaw.experimental.{name}() works inside a function's container "
                           f"(in the code of a call), not in this process")


def stop_fetching_inputs():
    """The container takes no more inputs: the runtime sends it none after
    the answer of the input running now (and of others running at once,
    with @concurrent), then stops it, with its @exit methods; the next
    input gets another container."""
    _in_container("stop_fetching_inputs")
    _state.stop_fetching_inputs = True


def get_local_input_concurrency():
    """How many inputs this container is sent at once: its
    max_concurrent_inputs (@concurrent, with_concurrency), or its batch size
    (@batched)."""
    _in_container("get_local_input_concurrency")
    return _state.input_concurrency


_NOT_PROVIDED = {
    "set_local_input_concurrency":
        "thaw's runtime sends each container up to its max_concurrent_inputs, fixed when it starts; "
        "use @thaw.concurrent(max_inputs=N) or Cls.with_concurrency(max_inputs=N)",
    "clustered": "thaw runs on one host: there are no multi-node clusters",
    "get_cluster_info": "thaw runs on one host: there are no multi-node clusters",
    "raw_registry_image": "thaw builds no images; functions run in the host's environment",
    "raw_dockerfile_image": "thaw builds no images; functions run in the host's environment",
    "notebook_base_image": "thaw builds no images; functions run in the host's environment",
    "image_delete": "thaw keeps no built images",
}


def __getattr__(name):
    if name in _NOT_PROVIDED:
        raise AttributeError(f"thaw does not provide modal.experimental.{name}: {_NOT_PROVIDED[name]}")
    raise AttributeError(f"thaw does not provide modal.experimental.{name} (it has "
                         f"stop_fetching_inputs and get_local_input_concurrency)")


__all__ = ["stop_fetching_inputs", "get_local_input_concurrency"]
