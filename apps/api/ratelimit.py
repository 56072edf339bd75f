"""Requests per minute per API token and per session user, counted in Redis (all web processes
share one count). A fixed one-minute window: simple, one INCR a request, and a client told
`Retry-After` the seconds left in the window.

Fails open: when Redis cannot be reached the request is let through (and logged once a minute),
since the job engine's own budgets (apps/quotas) still hold and a rate limit must not take the API
down with the broker.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

log = logging.getLogger(__name__)
WINDOW = 60
_client: redis.Redis | None = None
_last_warning = 0.0


class RateLimited(Exception):
    def __init__(self, retry_after: int, limit: int):
        super().__init__(
            f"Rate limit of {limit} requests a minute reached; retry in {retry_after} s"
        )
        self.retry_after = retry_after
        self.limit = limit


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5)
    return _client


def per_minute() -> int:
    return int(settings.ATELIER["API_RATE_PER_MINUTE"])


def check(key: str, *, limit: int | None = None) -> None:
    """Count one request of `key` ("token:12", "user:3"); RateLimited past the limit."""
    global _last_warning
    limit = per_minute() if limit is None else limit
    if limit <= 0:
        return
    now = time.time()
    window = int(now // WINDOW)
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "atelier")
    name = f"{prefix}:ratelimit:{key}:{window}"
    try:
        pipe = redis_client().pipeline()
        pipe.incr(name)
        pipe.expire(name, WINDOW + 5)
        count = int(pipe.execute()[0])
    except redis.RedisError:
        if now - _last_warning > 60:
            _last_warning = now
            log.warning("rate limit not counted: Redis unreachable", exc_info=True)
        return
    if count > limit:
        raise RateLimited(max(1, int((window + 1) * WINDOW - now) + 1), limit)
