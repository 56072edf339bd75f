"""The baseline: a bare Celery task that only records when it started.

Loaded into a worker with `--include bench.tasks`, so it runs in the platform's own Celery app,
with the same broker, pool and settings as `atelier.run_job`, minus the job engine.
"""

from __future__ import annotations

import json
import os
import time

import redis
from celery import shared_task

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client


@shared_task(name="bench.stamp", ignore_result=True)
def stamp(reply_key: str, sent_at: float) -> None:
    started_at = time.time()  # first thing: this is what the baseline measures
    _redis().rpush(reply_key, json.dumps({"sent": sent_at, "started": started_at}))
