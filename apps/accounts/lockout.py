"""What a locked-out client is told: when to try again, as a page or, for the API, as JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_failure_limit, get_lockout_parameters
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _


@dataclass(frozen=True)
class Lock:
    """One lockout parameter ("username" or "ip_address") at or over the failure limit."""

    parameter: str
    failures: int
    last_failure: datetime


def locks(request: HttpRequest, credentials: dict | None) -> list[Lock]:
    """The parameters of this request that are locked out now (axes counts; we only read them)."""
    limit = get_failure_limit(request, credentials)
    handler = AxesProxyHandler.get_implementation()
    parameters = get_lockout_parameters(request, credentials)
    found = []
    for parameter, attempts in zip(
        parameters, handler.get_user_attempts(request, credentials), strict=True
    ):
        totals = attempts.aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
        if (totals["failures"] or 0) >= limit:
            name = parameter if isinstance(parameter, str) else "+".join(parameter)
            found.append(Lock(name, totals["failures"], totals["last"]))
    return found


def retry_at(request: HttpRequest, credentials: dict | None) -> datetime:
    """When the last lock on this request lifts: the cool-off after its last failure."""
    cool_off = get_cool_off(request)
    last = max((lock.last_failure for lock in locks(request, credentials)), default=None)
    return (last or timezone.now()) + cool_off


def lockout_response(
    request: HttpRequest, original_response=None, credentials: dict | None = None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429 with Retry-After, a page for people and JSON for the API."""
    if credentials is None and isinstance(original_response, dict):
        credentials = original_response  # axes' async middleware passes the credentials second
    credentials = credentials or getattr(request, "axes_credentials", None)
    when = retry_at(request, credentials)
    seconds = max(1, math.ceil((when - timezone.now()).total_seconds()))
    if wants_json(request):
        response = JsonResponse(
            {
                "detail": _("Too many failed logins. Try again later."),
                "retry_at": when.isoformat(),
                "retry_after": seconds,
            },
            status=429,
        )
    else:
        context = {
            "retry_at": when,
            "retry_at_iso": when.isoformat(),
            "minutes": math.ceil(seconds / 60),
        }
        response = render(request, "accounts/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


def wants_json(request: HttpRequest) -> bool:
    return (
        request.path.startswith("/api/")
        or request.headers.get("x-requested-with") == "XMLHttpRequest"
        or (request.accepts("application/json") and not request.accepts("text/html"))
    )
