"""The usage page for platform admins (staff): worker-seconds per project, user, kind, month."""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header

from apps.audit.exports import spreadsheet_cell
from apps.quotas import selectors


def _staff(request: HttpRequest) -> None:
    # Not a project page: people who are not platform staff are told it does not exist.
    if not (request.user.is_staff or request.user.is_superuser):
        raise Http404("No such page")


def _query(request: HttpRequest):
    group = request.GET.get("group", "project")
    if group not in selectors.GROUPS:
        group = "project"
    month_text = request.GET.get("month", "")
    month = selectors.parse_month(month_text)
    rows, total = selectors.usage(group=group, month=month)
    return group, month_text if month else "", rows, total


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    _staff(request)
    group, month, rows, total = _query(request)
    return render(
        request,
        "quotas/usage.html",
        {
            "group": group,
            "groups": [(k, label) for k, (_, label) in selectors.GROUPS.items()],
            "label": selectors.GROUPS[group][1],
            "month": month,
            "rows": rows,
            "total": total,
        },
    )


@login_required
def usage_csv(request: HttpRequest) -> HttpResponse:
    _staff(request)
    group, month, rows, total = _query(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"atelier-usage-by-{group}{'-' + month if month else ''}.csv"
    response["Content-Disposition"] = content_disposition_header(True, name)
    writer = csv.writer(response)
    writer.writerow([selectors.GROUPS[group][1], "jobs", "worker_seconds", "gpu_seconds"])
    for row in [*rows, total]:
        writer.writerow(
            [
                spreadsheet_cell(row.key),
                row.jobs,
                f"{row.worker_seconds:.3f}",
                f"{row.gpu_seconds:.3f}",
            ]
        )
    return response
