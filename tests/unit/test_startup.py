"""The web process loads its URLconf and views as it starts, before it freezes its startup objects:
the first request after a (re)start does not import them (531-585 -> 10-12 ms here), and full
collections do not walk them; its young collections come every 50,000 allocations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json, sys
import webapp.asgi  # noqa: F401 - builds the app, loads the URLconf, freezes
views = [m for m in ("apps.jobs.views", "apps.api.openai_compat.chat") if m in sys.modules]
from django.urls import get_resolver
resolver = get_resolver()
patterns, reverse = resolver.url_patterns, resolver.reverse_dict  # made now unless made before
walked = {id(o) for o in gc.get_objects()}  # the permanent (frozen) generation is not listed
print(json.dumps({
    "views_loaded": views,
    "patterns_frozen": id(patterns) not in walked and id(reverse) not in walked,
    "frozen": gc.get_freeze_count(),
    "young_threshold": gc.get_threshold()[0],
}))
"""


def test_the_asgi_app_loads_its_views_before_freezing_startup_objects():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["views_loaded"] == ["apps.jobs.views", "apps.api.openai_compat.chat"]
    assert report["patterns_frozen"] is True
    assert report["frozen"] > 100_000
    # A doorbell's fan-out to many sockets must not be cut by young collections (webapp/startup).
    assert report["young_threshold"] == 50_000
