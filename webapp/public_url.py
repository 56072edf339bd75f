"""Absolute URLs for what leaves the site: webhook payloads, the API's image links.

ATELIER["PUBLIC_URL"] is the address users reach this Atelier at. Behind a proxy the request's
own host may be an internal one, so a configured address wins; without one an API answer uses the
request's host (what the caller just reached), and a payload sent with no request in hand (a
webhook) keeps the site-relative path, as before.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def absolute_url(path: str, request: HttpRequest | None = None) -> str:
    """`path` (site-relative, starting with /) made absolute where an address is known."""
    if not path.startswith("/"):
        return path  # already absolute, or not a path of ours
    public = settings.ATELIER.get("PUBLIC_URL") or ""
    if public:
        return public + path
    if request is not None:
        return request.build_absolute_uri(path)
    return path
