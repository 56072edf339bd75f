"""The audit log, read-only: a project's page (admins and reviewers) and the platform's (staff),
filtered by the query string, paged, and exported as CSV or JSONL with the same filters."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.audit import exports, selectors
from apps.audit.forms import AuditFilterForm

PAGE_SIZE = 50


def _answer(request: HttpRequest, *, access, name: str, with_ip: bool) -> HttpResponse:
    """The page or the export of a project's events (`access` None: the platform's), as the
    form says."""
    project = access.project if access is not None else None
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        if form.data.get("format") in ("csv", "jsonl") and "format" not in form.errors:
            # An export link with a bad filter: a plain answer that says which and why.
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            return HttpResponse(
                f"Bad filter: {problems}", status=400, content_type="text/plain; charset=utf-8"
            )
        return _page(request, form=form, access=access, events=None, with_ip=with_ip)
    events = selectors.audit_events(filters=form.filters(), project=project)
    fmt = form.cleaned_data["format"]
    if fmt:
        return exports.export_response(events, fmt=fmt, name=name, with_ip=with_ip)
    return _page(request, form=form, access=access, events=events, with_ip=with_ip)


def _page(request: HttpRequest, *, form, access, events, with_ip: bool) -> HttpResponse:
    page, rows = None, []
    if events is not None:
        page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
        rows = [(e, selectors.event_row(e, with_ip=with_ip)) for e in page.object_list]
    return render(
        request,
        "audit/audit_log.html",
        {
            "project": access.project if access is not None else None,
            "membership": access,
            "form": form,
            "page": page,
            "rows": rows,
            "query": form.query(),
            "with_ip": with_ip,
        },
        status=200 if events is not None else 400,
    )


@login_required
@require_safe
def project_audit(request: HttpRequest, project_id: int) -> HttpResponse:
    access = selectors.project_audit_access(user=request.user, project_id=project_id)
    # Addresses are personal data: the project page and its exports leave them out.
    return _answer(request, access=access, name=f"audit-project-{access.project.pk}", with_ip=False)


@login_required
@require_safe
def platform_audit(request: HttpRequest) -> HttpResponse:
    selectors.platform_audit_check(user=request.user)
    return _answer(request, access=None, name="audit", with_ip=True)
