"""Junk in paths, query strings and form fields never makes a route answer 5xx.

Every URL pattern (enumerated as tests/test_authorization.py does) is called by a logged-in
platform admin — who passes every permission check and so reaches the parsing code — with each
path parameter replaced in turn by junk, and with junk in every query-string and form key the
views read. A junk id is a 400 or a 404 with a message, never a server error.
"""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import get_resolver

from tests.test_authorization import fill_route, http_routes, world  # noqa: F401  (the fixture)

JUNK = ("abc", "-1", "99999999999999999999", "1.5", "%00", "\x00", "x" * 3000, "", " 1 ")
# Keys the views read from request.GET / request.POST (grep "request.GET", "request.POST").
KEYS = (
    "after",
    "jobs",
    "adapters",
    "prompt",
    "next",
    "page",
    "limit",
    "dataset",
    "version",
    "reuse",
    "collection",
    "model",
    "adapter",
    "since",
    "until",
    "download",
    "role",
    "action",
    "username",
    "upscaler",
    "scale",
    "tokenizer",
    "mode",
    "threshold",
    "kind",
    "steps",
    "seed",
    "validation_fraction",
    "max_concurrent_jobs",
    "base_model_id",
    "dataset_version_id",
)
PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def _routes() -> list[str]:
    return sorted(http_routes())


def _junk_paths(route: str, ids: dict) -> list[str]:
    """The route with each parameter replaced in turn by each junk value."""
    urls = []
    for name in PARAM.findall(route):
        for junk in JUNK:
            if junk in ("", "\x00"):
                continue  # an empty or raw NUL path segment is not a URL a client can send
            urls.append(fill_route(route, {**ids, name: junk}))
    return urls


def test_every_route_is_fuzzed():
    assert len(_routes()) > 30
    assert "api:job_events" in _routes()
    assert get_resolver().resolve("/api/v1/projects/1/jobs/2/events/").url_name == "job_events"


class Fuzzer:
    """Makes requests as the platform admin and keeps every 5xx (or uncaught error) it sees."""

    def __init__(self, client, user):
        self.client, self.user, self.failures = client, user, []

    def __call__(self, method: str, url: str, what: str, **kwargs) -> None:
        self.client.force_login(self.user)  # the logout route logs the client out
        try:
            status = getattr(self.client, method)(url, **kwargs).status_code
        except Exception as exc:  # noqa: BLE001 - the test client re-raises a view's error
            self.failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:160]}")
            return
        if status >= 500:
            self.failures.append(f"{what}: {status}")


@pytest.mark.parametrize("key", _routes())
def test_junk_never_makes_a_route_fail_with_a_server_error(client, world, key, make_user):  # noqa: F811
    fuzz = Fuzzer(client, make_user("root", is_superuser=True, is_staff=True))
    route = http_routes()[key]
    url = fill_route(route, world.ids())
    for junk in JUNK:
        fields = {k: junk for k in KEYS}
        fuzz("get", url, f"GET {url} ?…={junk[:20]!r}", data=fields)
        fuzz("post", url, f"POST {url} …={junk[:20]!r}", data=fields)
        upload = SimpleUploadedFile("junk.csv", b"question,answer\nA?,B.\n")
        fuzz("post", url, f"POST {url} file, …={junk[:20]!r}", data={**fields, "file": upload})
        fuzz(
            "post",
            url,
            f"POST {url} JSON {junk[:20]!r}",
            data="{" + junk,
            content_type="application/json",
        )
    for junk_url in _junk_paths(route, world.ids()):
        fuzz("get", junk_url, f"GET {junk_url[:100]}")
        fuzz("post", junk_url, f"POST {junk_url[:100]}")
    assert not fuzz.failures, "\n".join(fuzz.failures)
