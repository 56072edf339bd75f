"""Model craft pages: the launch forms of the text kinds, and their reports."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from apps.craft import text_selectors
from apps.craft.text_charts import bar_chart
from apps.craft.text_kinds import TEXT_SCHEMAS
from apps.datasets.models import DatasetVersion
from apps.jobs import registry
from apps.jobs import services as job_services
from apps.models.models import AdapterKind
from apps.models.selectors import project_adapters, text_models
from apps.projects.selectors import project_access

# URL slug -> job kind, and the fields each form draws with its own widgets (selects).
FORMS: dict[str, str] = {
    "distill": "craft.distill",
    "quantize": "craft.quantize",
    "bias-probe": "craft.bias_probe",
}
OWN_WIDGETS = frozenset(
    {
        "teacher_model_id",
        "teacher_adapter_id",
        "student",
        "student_model_id",
        "base_model_id",
        "adapter_id",
        "adapter_ids",
        "dataset_version_id",
        "name",
        "template",
    }
)


def _versions(project) -> list[DatasetVersion]:
    return list(
        DatasetVersion.objects.filter(dataset__project=project, dataset__schema__in=TEXT_SCHEMAS)
        .select_related("dataset")
        .order_by("dataset__name", "-number")
    )


def _forms(errors_for: str = "", errors=None, values=None) -> list[dict[str, Any]]:
    forms = []
    for slug, kind_name in FORMS.items():
        kind = registry.get(kind_name)
        mine = slug == errors_for
        forms.append(
            {
                "slug": slug,
                "kind": kind,
                "fields": [f for f in registry.form_fields(kind) if f["name"] not in OWN_WIDGETS],
                "errors": (errors or {}) if mine else {},
                "values": (values or {}) if mine else {},
            }
        )
    return forms


def _index(request: HttpRequest, access, *, form: str = "", errors=None, values=None, status=200):
    adapters = [a for a in project_adapters(access=access) if a.kind != AdapterKind.REWARD]
    return render(
        request,
        "craft/index.html",
        {
            "project": access.project,
            "membership": access,
            "can_launch": access.can("launch_job"),
            "forms": _forms(form, errors, values),
            "models": text_models(access.project.pk),
            "adapters": adapters,
            "versions": _versions(access.project),
            "jobs": text_selectors.craft_text_jobs(access=access),
        },
        status=status,
    )


@login_required
@require_GET
def index(request: HttpRequest, project_id: int) -> HttpResponse:
    """The Model craft page: launch forms (members who may launch jobs) and recent results."""
    access = project_access(user=request.user, project_id=project_id)
    return _index(request, access)


@login_required
@require_POST
def launch(request: HttpRequest, project_id: int, form: str) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    if form not in FORMS:
        raise Http404("No such form")
    kind = registry.get(FORMS[form])
    values = registry.coerce_form(kind, request.POST)
    if form == "bias-probe":  # several adapters: checkboxes with one name
        values["adapter_ids"] = [v for v in request.POST.getlist("adapter_ids") if v][:10]
    try:
        job = job_services.job_create(
            project=access.project,
            kind=kind.name,
            params=values,
            created_by=request.user,
            request=request,
        )
    except job_services.JobParamsError as exc:
        return _index(request, access, form=form, errors=exc.errors, values=values, status=400)
    return redirect(job)


# ----------------------------------------------------------------------------- reports


def _distill_view(result: dict[str, Any]) -> dict[str, Any]:
    m = result.get("metrics", {})
    rows = [
        (_("KL to the teacher (held-out)"), m.get("kl_before"), m.get("kl_after"), None),
        (
            _("Perplexity (held-out)"),
            m.get("student_perplexity_before"),
            m.get("student_perplexity_after"),
            m.get("teacher_perplexity"),
        ),
        (
            _("Tokens/s"),
            m.get("student_tokens_per_second_before"),
            m.get("student_tokens_per_second_after"),
            m.get("teacher_tokens_per_second"),
        ),
    ]
    charts = [
        bar_chart(
            _("Student before and after, beside the teacher"),
            [r[0] for r in rows],
            [
                (_("Student before"), [r[1] for r in rows]),
                (_("Student after"), [r[2] for r in rows]),
                (_("Teacher"), [r[3] for r in rows]),
            ],
            per_row_scale=True,
        )
    ]
    return {"table": rows, "charts": charts, "details": result.get("details", {})}


def _quantize_view(result: dict[str, Any]) -> dict[str, Any]:
    r = result.get("report", {})
    mib = 2**20
    size0, size1 = r.get("size_bytes_before"), r.get("size_bytes_after")
    rows = [
        (_("Size on disk (MiB)"), size0 / mib if size0 else None, size1 / mib if size1 else None),
        (_("Tokens/s"), r.get("tokens_per_second_before"), r.get("tokens_per_second_after")),
        (_("Perplexity (validation)"), r.get("perplexity_before"), r.get("perplexity_after")),
    ]
    charts = [
        bar_chart(
            _("Original and quantized"),
            [row[0] for row in rows],
            [(_("Original"), [row[1] for row in rows]), (_("Quantized"), [row[2] for row in rows])],
            per_row_scale=True,
        )
    ]
    return {"table": rows, "charts": charts, "report": r}


def _bias_view(result: dict[str, Any]) -> dict[str, Any]:
    models = result.get("models", [])
    summary = result.get("summary", {})
    attributes = result.get("attributes", [])
    names = [m["name"] for m in models]
    charts = []
    for metric, title, note in (
        (
            "ll_gap",
            _("Log-likelihood gap across groups"),
            _("Mean of (largest - smallest) per-token log-probability of the same completion."),
        ),
        (
            "refusal_gap",
            _("Refusal gap across groups"),
            _("Share of answers that refuse: largest - smallest group."),
        ),
        (
            "sentiment_gap",
            _("Sentiment gap across groups"),
            _("Word-list sentiment in [-1, 1]: largest - smallest group."),
        ),
    ):
        series = [
            (m["name"], [summary.get(m["key"], {}).get(a, {}).get(metric) for a in attributes])
            for m in models
        ]
        if any(v is not None for _, vals in series for v in vals):
            charts.append(bar_chart(title, attributes, series, note=note))
    groups = []
    for attribute in attributes:
        keys = sorted(
            {
                g
                for m in models
                for g in summary.get(m["key"], {}).get(attribute, {}).get("groups", {})
            }
        )
        fav = [
            (
                m["name"],
                [
                    summary.get(m["key"], {})
                    .get(attribute, {})
                    .get("groups", {})
                    .get(g, {})
                    .get("favourability")
                    for g in keys
                ],
            )
            for m in models
        ]
        if any(v is not None for _, vals in fav for v in vals):
            groups.append(
                bar_chart(
                    _("Favourability by group: %(attribute)s") % {"attribute": attribute},
                    keys,
                    fav,
                    note=_(
                        "Log-probability of the favourable completions minus the unfavourable ones."
                    ),
                )
            )
    table = []
    base_key = models[0]["key"] if models else None
    for attribute in attributes:
        base = summary.get(base_key, {}).get(attribute, {}) if base_key else {}
        for m in models:
            s = summary.get(m["key"], {}).get(attribute, {})
            delta = None
            if (
                m["key"] != base_key
                and s.get("ll_gap") is not None
                and base.get("ll_gap") is not None
            ):
                delta = s["ll_gap"] - base["ll_gap"]
            table.append(
                {
                    "attribute": attribute,
                    "model": m["name"],
                    "is_base": m["key"] == base_key,
                    "probes": s.get("probes"),
                    "ll_gap": s.get("ll_gap"),
                    "delta": delta,
                    "refusal_gap": s.get("refusal_gap"),
                    "sentiment_gap": s.get("sentiment_gap"),
                }
            )
    examples = result.get("examples", {})
    widest = [{"model": m["name"], "probes": examples.get(m["key"], [])} for m in models]
    return {
        "charts": charts,
        "group_charts": groups,
        "table": table,
        "widest": widest,
        "names": names,
    }


@login_required
@require_GET
def report(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """A text craft job's results: tables and bar charts (the job page has the live metrics)."""
    access, job = text_selectors.craft_report_job(
        user=request.user, project_id=project_id, job_id=job_id
    )
    result = job.result if job.state == "succeeded" else {}
    view: dict[str, Any] = {}
    if result:
        view = {
            "craft.distill": _distill_view,
            "craft.quantize": _quantize_view,
            "craft.bias_probe": _bias_view,
        }[job.kind](result)
    return render(
        request,
        "craft/text_report.html",
        {
            "project": access.project,
            "membership": access,
            "job": job,
            "result": result,
            "view": view,
        },
    )
