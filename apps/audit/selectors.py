"""Reads of the audit log for its page and its exports: who may read which part, the filtered
events newest first, and each event as the flat row the page, the CSV and the JSONL all show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.projects.selectors import ProjectAccess, project_access


@dataclass(frozen=True)
class AuditFilters:
    action: str = ""  # a prefix: "review." finds review.approve and review.reject
    actor: str = ""  # a username (any case)
    date_from: date | None = None  # inclusive, in the site's time zone
    date_to: date | None = None  # inclusive
    target_type: str = ""  # as recorded: output, datasetversion, rulesetversion, ...


def project_audit_access(*, user, project_id: int) -> ProjectAccess:
    """A project's audit log is for its admins and reviewers (others: 404 or 403, as anywhere)."""
    return project_access(user=user, project_id=project_id, need="view_audit")


def platform_audit_check(*, user) -> None:
    """The whole platform's log is for staff; everyone else is told it does not exist."""
    if not (user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser)):
        raise Http404("No such page")


EARLIEST, LATEST = date(1970, 1, 1), date(9000, 1, 1)


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def audit_events(*, filters: AuditFilters, project=None) -> QuerySet[AuditEvent]:
    """The events of `project` (None: of the whole platform, for staff), filtered, newest first.
    The caller has checked access (project_audit_access or platform_audit_check)."""
    events = AuditEvent.objects.select_related("project")
    if project is not None:
        events = events.filter(project=project)
    if filters.action:
        events = events.filter(action__startswith=filters.action)
    if filters.actor:
        events = events.filter(actor_username__iexact=filters.actor)
    if filters.target_type:
        events = events.filter(target_type=filters.target_type)
    # Bounds on the indexed column (not created_at__date, which no index serves). A bound past
    # the years any event has is no bound: at year 1 or 9999 the time zone shift overflows.
    if filters.date_from and filters.date_from > EARLIEST:
        events = events.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to and filters.date_to < LATEST:
        events = events.filter(created_at__lt=_day_start(filters.date_to + timedelta(days=1)))
    return events.order_by("-created_at", "-id")


# Keys of `data` that have their own column; the rest is shown as it is.
WHY_KEYS = ("reason", "comment")


def _ruleset_version(event: AuditEvent) -> Any:
    data = event.data if isinstance(event.data, dict) else {}
    if data.get("ruleset_version") is not None:
        return data["ruleset_version"]
    # A rule change records the version it wrote as "version"; elsewhere "version" is another
    # thing's number (a dataset version), so it is not read as a rule-set version.
    if event.action.startswith("moderation.rules"):
        return data.get("version")
    return None


def event_row(event: AuditEvent, *, with_ip: bool = False) -> dict[str, Any]:
    """One event as flat, JSON-ready columns: when, who, what, on what, where, why, rule set."""
    data = event.data if isinstance(event.data, dict) else {"value": event.data}
    why = next((data[k] for k in WHY_KEYS if data.get(k)), "")
    version = _ruleset_version(event)
    shown = set(WHY_KEYS) | {"ruleset_version"}
    if event.action.startswith("moderation.rules"):
        shown.add("version")
    row = {
        "id": event.pk,
        "created_at": event.created_at.isoformat(),
        "actor": event.actor_username,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "project_id": event.project_id,
        "project": event.project.name if event.project is not None else "",
        "reason": str(why),
        "ruleset_version": version,
        "data": data,
        "details": compact({k: v for k, v in data.items() if k not in shown}),
    }
    if with_ip:
        row["ip_address"] = event.ip_address or ""
    return row


def compact(data: dict[str, Any]) -> str:
    """`data` as short JSON, for one table cell ("" when empty)."""
    if not data:
        return ""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
