"""@wsgi_app / @asgi_app: the app a web function returns, made once per
container."""

import threading


def _app_key(kind, target):
    """The key of target's app in the cache. A bound method is a key that
    keeps its instance alive (and equals the method got again from the same
    instance)."""
    try:
        key = ("thaw._web", kind, target)
        hash(key)
    except TypeError:
        key = ("thaw._web", kind, id(target))
    return key


def _cached_app(kind, target, apps, make):
    """The app the web function `target` returned, made on first use and kept
    in `apps`."""
    key = _app_key(kind, target)
    # The lock lives with the cache (one per container): dict.setdefault is
    # atomic, so concurrent first requests share one.
    with apps.setdefault(("thaw._web", "lock"), threading.Lock()):
        # Under the lock: concurrent first requests must not make two apps.
        entry = apps.get(key)
        if entry is None:
            entry = make(target)
            apps[key] = entry
    return entry
