"""Compare fine-tune runs: the metric curves of several jobs of a project, overlaid (one chart
per metric name, one series per job), from the same stored metrics events the job page replays.

The view lives beside its selectors: a page of the spine that reads only Job rows and their
events (the adapter's name comes through Job's reverse relation, without importing the models
app, which sits above the spine).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from apps.jobs.models import Job
from apps.jobs.selectors import job_metric_series
from apps.projects.selectors import ProjectAccess, project_access

KIND_PREFIX = "finetune."
MAX_JOBS = 8
LIST_LIMIT = 100


def finetune_jobs(*, access: ProjectAccess, limit: int = LIST_LIMIT) -> list[Job]:
    """The project's fine-tune jobs of any kind (finetune.*), newest first."""
    return list(
        Job.objects.filter(project=access.project, kind__startswith=KIND_PREFIX)
        .select_related("created_by", "adapter")
        .order_by("-pk")[:limit]
    )


def parse_job_ids(query) -> list[int]:
    """?jobs=3,5,8 or ?jobs=3&jobs=5 (the picker's checkboxes); order kept, repeats dropped.
    Anything that is not a job id is a 404, as an unknown id is."""
    ids: list[int] = []
    for value in query.getlist("jobs")[:50]:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            # 18 digits: any larger number overflows the database's integer, and is no job.
            if not part.isdigit() or len(part) > 18:
                raise Http404("No such job")
            if int(part) not in ids:
                ids.append(int(part))
    return ids


def _adapter_name(job: Job) -> str:
    try:
        return job.adapter.name  # the Adapter's one-to-one to its job, seen from the job
    except ObjectDoesNotExist:
        return ""


def job_label(job: Job) -> str:
    """The legend of a run: its number, and the adapter (or run) name."""
    name = _adapter_name(job) or str((job.params or {}).get("name") or "")
    return f"#{job.pk} · {name}" if name else f"#{job.pk} · {job.kind_label}"


def compare_data(*, access: ProjectAccess, job_ids: list[int]) -> dict[str, Any]:
    """Each job's metric series, for the chosen fine-tune jobs of `access.project`:
    {"jobs": [{id, label, kind, kind_label, state, state_label, url, adapter}], "metrics": {name: {job id: [[step, value]]}},
    "last": {name: {job id: value}}}. A job that is not a fine-tune of this project is a 404
    (the same answer for another project's job as for none)."""
    found = {
        j.pk: j
        for j in Job.objects.filter(
            pk__in=job_ids, project=access.project, kind__startswith=KIND_PREFIX
        ).select_related("adapter")
    }
    if len(found) != len(job_ids):
        raise Http404("No such fine-tune job")
    jobs = [found[i] for i in job_ids]
    metrics: dict[str, dict[str, list[list[float]]]] = {}
    last: dict[str, dict[str, float]] = {}
    for job in jobs:
        for name, points in job_metric_series(job=job).items():
            numeric = [[s, v] for s, v in points if isinstance(v, int | float)]
            if not numeric:
                continue
            metrics.setdefault(name, {})[str(job.pk)] = numeric
            last.setdefault(name, {})[str(job.pk)] = numeric[-1][1]
    return {
        "jobs": [
            {
                "id": j.pk,
                "label": job_label(j),
                "kind": j.kind,
                "kind_label": j.kind_label,
                "state": j.state,
                "state_label": str(j.get_state_display()),
                "url": j.get_absolute_url(),
                "adapter": _adapter_name(j),
            }
            for j in jobs
        ],
        "metrics": dict(sorted(metrics.items())),
        "last": dict(sorted(last.items())),
    }


def _fmt(value: float | None) -> str | None:
    # Six significant digits: learning rates (1e-4) must not read 0.
    return None if value is None else f"{value:.6g}"


@login_required
def compare_runs(request: HttpRequest, project_id: int) -> HttpResponse:
    """Pick fine-tune runs of the project and overlay their metric curves."""
    access = project_access(user=request.user, project_id=project_id)
    ids = parse_job_ids(request.GET)
    truncated = len(ids) > MAX_JOBS
    ids = ids[:MAX_JOBS]
    data = compare_data(access=access, job_ids=ids) if ids else None
    summary = []
    if data:
        for name, values in data["last"].items():
            summary.append(
                {
                    "name": name,
                    "values": [_fmt(values.get(str(j["id"]))) for j in data["jobs"]],
                    "curve": any(len(p) > 1 for p in data["metrics"][name].values()),
                }
            )
    return render(
        request,
        "jobs/compare.html",
        {
            "project": access.project,
            "membership": access,
            "runs": finetune_jobs(access=access),
            "selected": ids,
            "data": data,
            "summary": summary,
            "has_curves": any(row["curve"] for row in summary),
            "truncated": truncated,
            "max_jobs": MAX_JOBS,
        },
    )
