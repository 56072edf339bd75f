"""The review inbox (every project where the user reviews) and each project's rule-set editor."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.moderation.models import RuleSetVersion
from apps.moderation.services import (
    RULE_KINDS,
    RuleSetInvalid,
    clean_rules,
    highlight,
    rules_from_json,
    ruleset_current,
    ruleset_save,
    scan_hits,
)
from apps.projects.selectors import project_access
from apps.review import loop as loop_selectors
from apps.review import selectors, services
from workers.moderation import CATEGORIES, SEVERITIES, compile_rules

SAMPLE_LIMIT = 20000
NEW_ROWS = 3


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    accesses = selectors.review_accesses(user=request.user)
    if not accesses:
        raise Http404("No review inbox")
    filters = selectors.Filters.from_query(request.GET)
    items = selectors.inbox_items(user=request.user, filters=filters)
    context = {
        "items": items,
        "filters": filters,
        "projects": [a.project for a in accesses.values()],
        "categories": CATEGORIES,
        "kinds": selectors.KINDS,
        "ages": list(selectors.AGES),
        "query": request.GET.urlencode(),
    }
    if request.GET.get("partial"):
        return render(request, "review/_queue.html", context)
    return render(request, "review/inbox.html", context)


def _parse_items(values: list[str]) -> list[tuple[str, int, int]]:
    """ "output:<project>:<id>" / "dataset:<project>:<id>" as submitted by the inbox."""
    items = []
    for value in values[:500]:
        kind, _sep, rest = value.partition(":")
        project, _sep, item = rest.partition(":")
        if kind in ("output", "dataset") and project.isdigit() and item.isdigit():
            items.append((kind, int(project), int(item)))
    return items


@login_required
@require_POST
def decide(request: HttpRequest) -> HttpResponse:
    accesses = selectors.review_accesses(user=request.user)
    if not accesses:
        raise Http404("No review inbox")
    decision = request.POST.get("decision")
    items = _parse_items(request.POST.getlist("item"))
    wants_json = "application/json" in request.headers.get("Accept", "")
    if decision not in ("approve", "reject") or not items:
        message = _("Choose at least one item and approve or reject.")
        if wants_json:
            return JsonResponse({"error": message}, status=400)
        messages.error(request, message)
        return redirect(reverse("review:inbox"))
    results = services.decide_many(
        accesses=accesses,
        actor=request.user,
        items=items,
        approve=decision == "approve",
        reason=request.POST.get("reason", ""),
        request=request,
    )
    if wants_json:
        return JsonResponse(
            {
                "results": [r.__dict__ for r in results],
                "count": selectors.inbox_count(user=request.user),
            }
        )
    done = sum(r.ok for r in results)
    if done:
        messages.success(request, _("%(n)d decided.") % {"n": done})
    for r in results:
        if not r.ok:
            messages.error(request, f"{r.key}: {r.message}")
    return redirect(reverse("review:inbox") + ("?" + request.POST.get("query", "")).rstrip("?"))


@login_required
@require_POST
def preference_export_view(request: HttpRequest) -> HttpResponse:
    """Approved and rejected outputs of the same prompt, as a preference dataset version of the
    chosen project (one where the user reviews)."""
    from apps.review.exports import preference_export

    project_id = request.POST.get("project") or ""
    access = selectors.review_accesses(user=request.user).get(
        int(project_id) if project_id.isdigit() else -1
    )
    if access is None:
        raise Http404("No such project")
    name = (request.POST.get("dataset_name") or "").strip() or loop_selectors.DEFAULT_DATASET_NAME
    # The loop page sends its own address: the user comes back to it either way.
    back = request.POST.get("next") or ""
    if not back.startswith("/") or not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = ""  # only a path on this site (never a URL name, another host or scheme)
    try:
        version = preference_export(
            project=access.project, actor=request.user, dataset_name=name, request=request
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back or reverse("review:inbox"))
    messages.success(
        request,
        _("Exported %(rows)d preference pairs as %(name)s v%(n)d.")
        % {"rows": version.rows, "name": version.dataset.name, "n": version.number},
    )
    return redirect(back or version.get_absolute_url())


@login_required
def loop(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's preference loop: generate, flag, decide, export, train (DPO), compare."""
    access = project_access(user=request.user, project_id=project_id)
    return render(
        request,
        "review/loop.html",
        {
            "project": access.project,
            "membership": access,
            "state": loop_selectors.loop_state(access=access, user=request.user),
            "can_review": access.can("review"),
            "can_launch": access.can("launch_job"),
        },
    )


# -- the rule-set editor ---------------------------------------------------------------------


def _rows_from_post(post) -> list[dict]:
    rows = []
    for i in range(int(post.get("count") or 0)):
        if post.get(f"r{i}-delete"):
            continue
        pattern = post.get(f"r{i}-pattern", "")
        if not pattern.strip() and not post.get(f"r{i}-id"):
            continue  # an empty new row
        rows.append(
            {
                "id": post.get(f"r{i}-id", ""),
                "kind": post.get(f"r{i}-kind", "keyword"),
                "pattern": pattern,
                "category": post.get(f"r{i}-category", "custom"),
                "severity": post.get(f"r{i}-severity", "flag"),
                "case_sensitive": bool(post.get(f"r{i}-case")),
                "note": post.get(f"r{i}-note", ""),
            }
        )
    return rows


def _sample_result(rows: list[dict], sample: str) -> dict:
    """What the (draft) rules match in the sample: highlighted pieces and the hits."""
    matcher = compile_rules(rules_from_json(clean_rules(rows)))
    hits = scan_hits(matcher.scan(sample[:SAMPLE_LIMIT], max_hits=200), "sample")
    return {"pieces": highlight(sample[:SAMPLE_LIMIT], hits), "hits": hits}


@login_required
def rules(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id, need="review")
    current = ruleset_current(access.project.pk)
    can_edit = access.can("manage_rules")
    rows: list[dict] = list(current.rules)
    errors: dict[int, dict[str, str]] = {}
    sample, tested, comment = "", None, ""
    if request.method == "POST":
        rows = _rows_from_post(request.POST)
        sample = request.POST.get("sample", "")
        comment = request.POST.get("comment", "")
        try:
            if request.POST.get("action") == "save":
                if not can_edit:
                    raise PermissionDenied(_("Only project admins change the rules"))
                version = ruleset_save(
                    project=access.project,
                    rows=rows,
                    actor=request.user,
                    comment=comment,
                    request=request,
                )
                messages.success(
                    request, _("Saved as rule set version %(n)d.") % {"n": version.number}
                )
                return redirect(reverse("review:rules", args=[access.project.pk]))
            tested = _sample_result(rows, sample)
        except RuleSetInvalid as exc:
            for index, field_name, message in exc.errors_by_row:
                errors.setdefault(index, {})[field_name] = message
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    context = {
        "project": access.project,
        "membership": access,
        "current": current,
        "rows": [{**r, "errors": errors.get(i, {})} for i, r in enumerate(rows)],
        "new_rows": range(len(rows), len(rows) + NEW_ROWS),
        "count": len(rows) + NEW_ROWS,
        "errors": errors,
        "can_edit": can_edit,
        "kinds": RULE_KINDS,
        "categories": CATEGORIES,
        "severities": SEVERITIES,
        "sample": sample,
        "tested": tested,
        "comment": comment,
        "versions": RuleSetVersion.objects.filter(project=access.project)
        .select_related("created_by")
        .order_by("-number")[:20],
    }
    return render(request, "review/rules.html", context, status=400 if errors else 200)
