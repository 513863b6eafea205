"""A fixed-window counter in the shared cache, for endpoints that anyone may call.

Redis holds the counters, so every worker process sees the same counts (a per-process cache
would let a caller dodge the limit: see portal.checks.shared_cache).
"""

from __future__ import annotations

from django.core.cache import cache


def rate_limited(key: str, *, limit: int, window_seconds: int) -> bool:
    """Count one call against `key`; True when this call is beyond `limit` in the window."""
    cache_key = f"ratelimit:{key}"
    # add() starts the window only if no counter exists; incr() is atomic in Redis.
    if cache.add(cache_key, 1, timeout=window_seconds):
        return False
    try:
        count = cache.incr(cache_key)
    except ValueError:  # the window ended between add() and incr()
        cache.add(cache_key, 1, timeout=window_seconds)
        return False
    return int(count) > limit
