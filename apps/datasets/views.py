from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods, require_POST

from apps.datasets import selectors, services, storage
from apps.datasets.decisions import decision_options
from apps.datasets.forms import DecisionForm, MappingForm, UploadForm
from apps.datasets.jobkinds import IMPORT_KIND
from apps.datasets.licenses import LICENSES
from apps.datasets.models import Approval
from apps.jobs import services as job_services
from apps.jobs.states import JobState
from apps.projects.selectors import project_access
from workers.data import tokenizers


@login_required
def dataset_list(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id)
    return render(
        request,
        "datasets/dataset_list.html",
        {
            "project": access.project,
            "membership": access,
            "can_upload": access.can("launch_job"),
            "datasets": selectors.project_datasets(access=access),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest, project_id: int) -> HttpResponse:
    """Step 1: the file and its compliance fields. The file is staged outside media and read
    once here, so a file that cannot be read at all (broken JSON, a fake zip) is refused on
    this step, with what is wrong and where, instead of reaching the mapping step."""
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    target = selectors.upload_target(
        access=access, dataset_id=request.GET.get("dataset") or request.POST.get("dataset")
    )
    form = UploadForm(
        request.POST or None, request.FILES or None, project=access.project, target=target
    )
    if request.method == "POST" and form.is_valid():
        staged = services.upload_stage(
            uploaded_file=form.cleaned_data["file"],
            user_id=request.user.pk,
            project_id=access.project.pk,
            meta=form.meta(),
        )
        _, sniff_error = selectors.staged_sniff(
            staged, encoding=form.cleaned_data["encoding"] or None
        )
        if sniff_error is None:
            return redirect("datasets:map", access.project.pk, staged.token)
        storage.discard_upload(staged)
        form.add_error("file", selectors.printable(sniff_error["message"], 2000))
    return render(
        request,
        "datasets/upload.html",
        {
            "project": access.project,
            "membership": access,
            "form": form,
            "target": target,
            "licenses": LICENSES,
        },
        status=400 if form.errors else 200,
    )


def _refused_import(request: HttpRequest, access, token: str):
    """The failed import of this staged upload named by ?job= (its errors are shown again with
    the form to change the mapping), or None."""
    job_id = request.GET.get("job") or ""
    if not job_id.isdecimal():
        return None
    _, job = selectors.import_job(user=request.user, project_id=access.project.pk, job_id=job_id)
    params = job.params or {}
    if job.kind != IMPORT_KIND or params.get("upload") != token or job.state != JobState.FAILED:
        return None
    return job


@login_required
@require_http_methods(["GET", "POST"])
def map_columns(request: HttpRequest, project_id: int, token: str) -> HttpResponse:
    """Step 2: map columns to roles, choose a template and split, then import: the import runs
    as a job (dataset.import) whose page follows it; a refused one comes back here (?job=)."""
    from workers.data.canonical import DEFAULT_TEMPLATES, SCHEMAS

    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    staged, meta, target = selectors.staged_upload(access=access, user=request.user, token=token)
    running = selectors.active_import(access=access, token=staged.token)
    if running is not None:  # one import per staged file at a time: follow the one under way
        return redirect("datasets:import", access.project.pk, running.pk)
    sniffed, sniff_error = selectors.staged_sniff(staged, encoding=meta.get("encoding") or None)
    refused = _refused_import(request, access, staged.token) if request.method == "GET" else None
    suggested = (
        sniffed.suggested_mapping.to_dict() if sniffed and sniffed.suggested_mapping else None
    )
    if refused is not None and refused.params.get("mapping"):
        suggested = refused.params["mapping"]  # the mapping that was tried, to change it
    form = MappingForm(
        request.POST or None,
        target=target,
        suggested_schema=suggested.get("schema") if suggested else None,
    )
    if refused is not None:
        form.initial.update(
            {k: refused.params[k] for k in ("template", "validation_fraction", "seed")}
        )
    if request.method == "POST" and form.is_valid() and sniffed is not None:
        cleaned = form.cleaned_data
        try:
            job = services.import_submit(
                project=access.project,
                actor=request.user,
                staged=staged,
                mapping={"schema": cleaned["schema"], "columns": cleaned["columns"]},
                fmt=sniffed.format,
                encoding=sniffed.encoding,
                template=cleaned["template"] or "",
                validation_fraction=cleaned["validation_fraction"],
                seed=cleaned["seed"],
                request=request,
            )
        except job_services.JobParamsError as exc:
            for message in exc.errors.values():
                form.add_error(None, message)
        else:
            return redirect("datasets:import", access.project.pk, job.pk)
    import_errors, import_total = selectors.import_refusal(refused) if refused else ([], 0)
    return render(
        request,
        "datasets/map.html",
        {
            "project": access.project,
            "membership": access,
            "form": form,
            "staged": staged,
            "meta": meta,
            "target": target,
            "sniffed": selectors.sniff_display(sniffed) if sniffed else None,
            "sniff_error": selectors.printable(sniff_error["message"], 2000)
            if sniff_error
            else None,
            "schemas": {name: list(spec.roles) for name, spec in SCHEMAS.items()},
            "required_roles": {name: list(spec.required) for name, spec in SCHEMAS.items()},
            "suggested": suggested,
            "default_templates": DEFAULT_TEMPLATES,
            "import_errors": import_errors,
            "import_total": import_total,
            "refused_job": refused,
            "preview_url": reverse("datasets:map_preview", args=[access.project.pk, staged.token]),
        },
        status=400 if form.errors else 200,
    )


@login_required
def import_status(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """An import job's page: progress while it runs (live over the job's websocket, or on
    reload), the new version once it succeeded, its errors with the mapping form once refused."""
    access, job = selectors.import_job(user=request.user, project_id=project_id, job_id=job_id)
    if job.kind != IMPORT_KIND:
        return redirect(job)
    version = selectors.import_version(access=access, job=job)
    if job.state == JobState.SUCCEEDED and version is not None:
        return redirect(version)
    staged = selectors.import_upload(access=access, user=request.user, job=job)
    if job.state == JobState.FAILED and staged is not None:
        map_url = reverse("datasets:map", args=[access.project.pk, staged.token])
        return redirect(f"{map_url}?job={job.pk}")
    errors, total = selectors.import_refusal(job) if job.state == JobState.FAILED else ([], 0)
    return render(
        request,
        "datasets/import.html",
        {
            "project": access.project,
            "membership": access,
            "job": job,
            "filename": (job.params or {}).get("filename") or "",
            "version": version,
            "import_errors": errors,
            "import_total": total,
            "can_cancel": job.state in (JobState.QUEUED, JobState.RUNNING)
            and access.can("cancel_job"),
        },
    )


@login_required
@require_POST
def import_cancel(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """Cancel an import: a queued one at once (its staged file goes with it), a running one at
    its next chunk of rows (the job discards the file); back to the import's page either way."""
    access, job = selectors.import_job(
        user=request.user, project_id=project_id, job_id=job_id, need="cancel_job"
    )
    if job.kind != IMPORT_KIND:
        return redirect(job)
    if services.import_cancel(job=job, actor=request.user, request=request):
        messages.success(request, gettext("Cancelling the import"))
    else:
        messages.error(request, gettext("This import has finished: nothing to cancel"))
    return redirect("datasets:import", access.project.pk, job.pk)


@login_required
@require_POST
def map_preview(request: HttpRequest, project_id: int, token: str) -> JsonResponse:
    """Live preview of rendered samples for the mapping page (JSON: schema, columns, template)."""
    from workers.data.canonical import Mapping
    from workers.data.errors import DatasetError, DatasetInvalid
    from workers.data.importer import preview

    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    staged, meta, _ = selectors.staged_upload(access=access, user=request.user, token=token)
    try:
        body = json.loads(request.body or b"{}")
        mapping = Mapping.from_dict(
            {"schema": body.get("schema", ""), "columns": body.get("columns") or {}}
        )
        result = preview(
            staged.file,
            staged.filename,
            mapping=mapping,
            template=body.get("template") or None,
            n=5,
            encoding=meta.get("encoding") or None,
        )
    except (DatasetError, DatasetInvalid, ValueError, KeyError) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(
        {
            "samples": [
                {"location": s.location, "text": s.text, "record": s.record} for s in result.samples
            ],
            "errors": [str(e) for e in result.errors],
        }
    )


@login_required
def dataset_detail(request: HttpRequest, project_id: int, dataset_id: int) -> HttpResponse:
    access, dataset = selectors.dataset_access(
        user=request.user, project_id=project_id, dataset_id=dataset_id
    )
    latest = dataset.latest_version
    if latest is not None:
        return redirect(latest)
    return render(
        request,
        "datasets/dataset_list.html",
        {
            "project": access.project,
            "membership": access,
            "datasets": selectors.project_datasets(access=access),
            "can_upload": access.can("launch_job"),
        },
    )


@login_required
def version_detail(
    request: HttpRequest, project_id: int, dataset_id: int, number: int
) -> HttpResponse:
    access, version = selectors.version_access(
        user=request.user, project_id=project_id, dataset_id=dataset_id, number=number
    )
    try:
        page = max(1, int(request.GET.get("page", 1)))
    except ValueError:
        page = 1
    pages = max(1, -(-version.rows // selectors.PAGE_SIZE))
    page = min(page, pages)
    dataset = version.dataset
    jobs = list(
        dataset.project.jobs.filter(kind__startswith="dataset.", params__version_id=version.pk)[:10]
    )
    return render(
        request,
        "datasets/version_detail.html",
        {
            "project": access.project,
            "membership": access,
            "dataset": dataset,
            "version": version,
            "versions": list(dataset.versions.select_related("created_by").order_by("-number")),
            "lineage": selectors.lineage(version),
            "moderation": selectors.moderation_summary(version),
            "rows": selectors.version_rows(version, page=page),
            "page": page,
            "pages": pages,
            "can_act": access.can("launch_job"),
            "can_review": access.can("review"),
            "can_scan": access.can("scan_dataset"),
            "decision_form": DecisionForm(),
            "decision": decision_options(version=version, actor=request.user, role=access.role),
            "histogram": selectors.length_histogram(version.stats),
            "jobs": jobs,
            "Approval": Approval,
            "tokenizers": tokenizers.available(),
        },
    )


@login_required
def version_download(request: HttpRequest, project_id: int, dataset_id: int, number: int, fmt: str):
    from workers.data.canonical import export_csv_lines

    access, version = selectors.version_access(
        user=request.user, project_id=project_id, dataset_id=dataset_id, number=number
    )
    path = storage.media_path(version.storage_path)
    base = f"{version.dataset.name}-v{version.number}".replace(" ", "_").replace("/", "_")
    if fmt == "jsonl":
        return FileResponse(
            open(path, "rb"),
            as_attachment=True,
            filename=f"{base}.jsonl",
            content_type="application/jsonl",
        )
    if fmt == "csv":
        response = StreamingHttpResponse(
            (line.encode("utf-8") for line in export_csv_lines(path, version.dataset.schema)),
            content_type="text/csv; charset=utf-8",
        )
        # Quoted and escaped by Django (RFC 6266 filename*= for non-ASCII): a `"` or `;` in a
        # dataset's name cannot add parameters to the header.
        response["Content-Disposition"] = content_disposition_header(True, f"{base}.csv")
        return response
    raise Http404("Unknown format")


@login_required
@require_POST
def version_action(
    request: HttpRequest, project_id: int, dataset_id: int, number: int
) -> HttpResponse:
    """Start a dataset job on this version: PII scan, redaction, or duplicate detection."""
    action = request.POST.get("action")
    # Reviewers may run a PII scan (they decide with its report in front of them); the other
    # actions make new versions and need a member's role.
    access, version = selectors.version_access(
        user=request.user,
        project_id=project_id,
        dataset_id=dataset_id,
        number=number,
        need="scan_dataset" if action == "pii_scan" else "launch_job",
    )
    params: dict = {"version_id": version.pk}
    kinds = {
        "pii_scan": "dataset.pii_scan",
        "redact": "dataset.redact",
        "dedup": "dataset.dedup",
        "stats": "dataset.stats",
    }
    if action not in kinds:
        messages.error(request, "Unknown action")
        return redirect(version)
    if action == "stats":
        params["tokenizer"] = request.POST.get("tokenizer", "all-MiniLM-L6-v2")
    if action == "redact":
        params["mode"] = request.POST.get("mode", "tag")
    if action == "dedup":
        params["semantic"] = request.POST.get("semantic") in ("1", "true", "on")
        params["keep_one"] = request.POST.get("keep_one") in ("1", "true", "on")
        if request.POST.get("threshold"):
            params["threshold"] = request.POST.get("threshold")
    try:
        job = job_services.job_create(
            project=access.project,
            kind=kinds[action],
            params=params,
            created_by=request.user,
            request=request,
        )
    except job_services.JobParamsError as exc:
        messages.error(request, f"Cannot start: {exc}")
        return redirect(version)
    return redirect(job)


@login_required
@require_POST
def version_decide(
    request: HttpRequest, project_id: int, dataset_id: int, number: int
) -> HttpResponse:
    access, version = selectors.version_access(
        user=request.user,
        project_id=project_id,
        dataset_id=dataset_id,
        number=number,
        need="review",
    )
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or reject and write a comment")
        return redirect(version)
    try:
        services.version_decide(
            version=version,
            actor=request.user,
            role=access.role,
            approve=form.cleaned_data["decision"] == "approve",
            comment=form.cleaned_data["comment"],
            request=request,
        )
    except ValidationError as exc:
        for msg in exc.messages:
            messages.error(request, msg)
    else:
        messages.success(request, f"{version}: {version.get_approval_display()}")
    return redirect(version)
