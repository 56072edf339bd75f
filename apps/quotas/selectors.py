"""Usage reads for platform admins: worker-seconds of jobs, grouped and totalled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Count, Sum
from django.db.models.functions import TruncMonth

GROUPS = {
    "project": ("project__name", "Project"),
    "user": ("created_by__username", "User"),
    "kind": ("kind", "Job kind"),
    "device": ("device", "Device"),
    "month": ("month", "Month"),
}


@dataclass(frozen=True)
class UsageRow:
    key: str
    jobs: int
    worker_seconds: float
    gpu_seconds: float

    label: str = ""  # the key as people read it (a job kind's label)

    @property
    def worker_hours(self) -> float:
        return self.worker_seconds / 3600

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600


def parse_month(value: str | None) -> datetime | None:
    """'2026-12' -> the first instant of that month (UTC); None for empty or malformed input."""
    if not value:
        return None
    try:
        year, month = (int(part) for part in value.split("-", 1))
        return datetime(year, month, 1, tzinfo=UTC)
    except (ValueError, TypeError):
        return None


def usage(*, group: str, month: datetime | None = None) -> tuple[list[UsageRow], UsageRow]:
    """Rows grouped by `group` (project, user, kind, device, month) and their total; only jobs
    created in `month` when given. Totals are sums of the jobs' worker-seconds."""
    from apps.jobs.models import Job

    field, _ = GROUPS.get(group, GROUPS["project"])
    jobs = Job.objects.all()
    if month is not None:
        nxt = month.replace(year=month.year + (month.month == 12), month=month.month % 12 + 1)
        jobs = jobs.filter(created_at__gte=month, created_at__lt=nxt)
    if field == "month":
        jobs = jobs.annotate(month=TruncMonth("created_at"))
    rows = []
    for values in (
        jobs.values(field)
        .annotate(jobs=Count("pk"), seconds=Sum("worker_seconds"))
        .order_by("-seconds", field)
    ):
        key = values[field]
        key = key.strftime("%Y-%m") if hasattr(key, "strftime") else (key or "—")
        rows.append(UsageRow(str(key), values["jobs"], float(values["seconds"] or 0), 0.0))
    gpu = (
        jobs.filter(queue="gpu")
        .values(field)
        .annotate(seconds=Sum("worker_seconds"))
        .values_list(field, "seconds")
    )
    gpu_by_key = {}
    for key, seconds in gpu:
        key = key.strftime("%Y-%m") if hasattr(key, "strftime") else (key or "—")
        gpu_by_key[str(key)] = float(seconds or 0)
    from apps.jobs import registry

    def label(key: str) -> str:
        kind = registry.find(key) if group == "kind" else None
        return kind.label if kind is not None else key

    rows = [
        UsageRow(r.key, r.jobs, r.worker_seconds, gpu_by_key.get(r.key, 0.0), label(r.key))
        for r in rows
    ]
    total = UsageRow(
        "Total",
        sum(r.jobs for r in rows),
        sum(r.worker_seconds for r in rows),
        sum(r.gpu_seconds for r in rows),
    )
    return rows, total
