"""`ray://NAME` targets: the live replicas of a Ray fleet, looked up by name and kept fresh.

A process connected to the fleet's Ray cluster (a trainer's driver or one of its Ray
workers; one that is not is connected with `ray.init(address="auto")`) asks the fleet's
controller actor for the addresses of its serving replicas. An answer is kept a few
seconds, so a batch of calls costs one lookup, and is asked again sooner when the client
has seen an endpoint fail (`refresh`), so a replica that died or moved is left at once
and one that came back is used. Other targets pass through unchanged. Ray is imported
only when a `ray://` target is used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from sandbox.api.fleet import ENDPOINTS_METHOD, RAY_NAMESPACE, RAY_SCHEME

TTL_SECONDS = 3.0  # how long an answer is used
MIN_REFRESH_SECONDS = 0.5  # the soonest an answer is asked again after a failure
_LOOKUP_SECONDS = 10.0

_lock = threading.Lock()
_cache: dict[str, tuple[float, tuple[str, ...]]] = {}  # name -> (when asked, addresses)


def is_ray(target: str) -> bool:
    return target.startswith(RAY_SCHEME)


def expand(targets: Sequence[str]) -> list[str]:
    """Every target, a `ray://NAME` replaced by its fleet's live replicas (itself while it
    has none: a call to it fails as UNAVAILABLE, which the client retries)."""
    out: list[str] = []
    for target in targets:
        out.extend((resolve(target[len(RAY_SCHEME) :]) or (target,)) if is_ray(target) else (target,))
    return out


def resolve(name: str) -> tuple[str, ...]:
    with _lock:
        asked, addresses = _cache.get(name, (0.0, ()))
        if time.monotonic() - asked < TTL_SECONDS:
            return addresses
    try:
        addresses, asked = tuple(_lookup(name)), time.monotonic()
    except Exception:  # noqa: BLE001 - fleet not found, cluster not reached: the last answer, asked again soon
        asked = time.monotonic() - TTL_SECONDS + MIN_REFRESH_SECONDS
    with _lock:
        _cache[name] = (asked, addresses)
    return addresses


def refresh(targets: Sequence[str]) -> None:
    """An endpoint failed: the next `expand` asks the fleets again (not more than twice a second)."""
    with _lock:
        for target in targets:
            name = target[len(RAY_SCHEME) :]
            if is_ray(target) and name in _cache:
                asked, addresses = _cache[name]
                _cache[name] = (min(asked, time.monotonic() - TTL_SECONDS + MIN_REFRESH_SECONDS), addresses)


def _lookup(name: str) -> list[str]:
    import ray

    if not ray.is_initialized():
        ray.init(address="auto", log_to_driver=False)
    controller: Any = ray.get_actor(name, namespace=RAY_NAMESPACE)
    return list(ray.get(getattr(controller, ENDPOINTS_METHOD).remote(), timeout=_LOOKUP_SECONDS))
