from __future__ import annotations

from pathlib import Path

from csp.decorators import csp_replace
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.galleries import links, selectors, services
from apps.models.models import Adapter, AdapterKind, AssetKind, BaseModel, ImageAsset
from apps.outputs.models import Collection, Moderation
from apps.outputs.services import served_file
from apps.projects.selectors import project_access


@login_required
def gallery(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id)
    filters = selectors.GalleryFilters.from_query(request.GET)
    page = Paginator(
        selectors.gallery(access=access, user=request.user, filters=filters),
        selectors.PAGE_SIZE,
        allow_empty_first_page=True,
    ).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "galleries/gallery.html",
        {
            "project": access.project,
            "membership": access,
            "page": page,
            "outputs": list(page.object_list),
            "filters": filters,
            "query": query.urlencode(),
            "statuses": Moderation.choices,
            "models": BaseModel.objects.filter(enabled=True).usable_by(access.project.pk),
            "adapters": Adapter.objects.filter(project=access.project),
            "reward_models": Adapter.objects.filter(
                project=access.project, kind=AdapterKind.REWARD
            ),
            "collections": selectors.project_collections(access=access),
            "can_curate": access.can("launch_job"),
            # The current filters, carried by the score form so it scores this very view.
            "filter_fields": [
                (k, v) for k, v in request.GET.items() if k not in ("page", "sort") and v
            ],
            "max_scored": selectors.MAX_SCORED,
        },
    )


@login_required
def output_detail(request: HttpRequest, project_id: int, output_id: int) -> HttpResponse:
    access, output = selectors.output_access(
        user=request.user, project_id=project_id, output_id=output_id
    )
    return render(
        request,
        "galleries/output_detail.html",
        {
            "project": access.project,
            "membership": access,
            "output": output,
            "can_delete": access.role == "admin" or output.created_by_id == request.user.pk,
            "collections": selectors.project_collections(access=access),
            "in_collections": set(output.collections.values_list("pk", flat=True)),
            "can_curate": access.can("launch_job"),
            "can_upscale": output.kind == "image"
            and bool(output.file_path)
            and access.can("launch_job"),
            "upscalers": ImageAsset.objects.filter(kind=AssetKind.UPSCALER, enabled=True),
            **selectors.output_review_context(output=output),
        },
    )


@login_required
@require_POST
def output_upscale(request: HttpRequest, project_id: int, output_id: int) -> HttpResponse:
    """The stand-alone upscale action: an image.upscale job making a new gallery image."""
    from apps.jobs import services as job_services

    access, output = selectors.output_access(
        user=request.user, project_id=project_id, output_id=output_id, need="launch_job"
    )
    try:
        job = job_services.job_create(
            project=access.project,
            kind="image.upscale",
            params={
                "output_id": output.pk,
                "upscaler": request.POST.get("upscaler", "lanczos"),
                "scale": request.POST.get("scale", "4"),
            },
            created_by=request.user,
            request=request,
        )
    except job_services.JobParamsError as exc:
        messages.error(request, f"Cannot upscale: {exc}")
        return redirect("galleries:output", access.project.pk, output.pk)
    return redirect(job)


@login_required
# Opened on its own, an image is shown in the browser's image viewer, whose inline styles the
# site-wide style-src 'self' would block; a PNG document has nothing else to protect.
@csp_replace({"style-src": ["'unsafe-inline'"]})
def output_file(request: HttpRequest, project_id: int, output_id: int, which: str):
    _, output = selectors.output_access(
        user=request.user, project_id=project_id, output_id=output_id
    )
    return _file_response(output, which, download=request.GET.get("download") == "1")


def signed_file(request: HttpRequest, token: str, name: str):
    """An image by a signed, expiring link (apps/galleries/links.py): no login, the link is the
    permission, checked again now (signature, age, the user's access to the output)."""
    output, which = links.open_link(token)
    response = _file_response(output, which, download=False)
    response["Cache-Control"] = "private, no-store"  # the link expires; caches must not outlive it
    response["Referrer-Policy"] = "no-referrer"
    return response


def _file_response(output, which: str, *, download: bool) -> FileResponse:
    record = getattr(output, "provenance", None)  # a reverse one-to-one: None when unrecorded
    rel = {
        "image": output.file_path,
        "thumb": output.thumb_path,
        # The copy with a signed C2PA manifest, once the record is final and the copy is made.
        "c2pa": record.credential_path if record is not None else "",
    }.get(which)
    if not rel:
        raise Http404("No file")
    path = (Path(settings.MEDIA_ROOT) / rel).resolve()
    if Path(settings.MEDIA_ROOT).resolve() not in path.parents or not path.is_file():
        raise Http404("No file")
    content_type, suffix = served_file(path, which)
    response = FileResponse(
        open(path, "rb"),
        content_type=content_type,
        as_attachment=download,
        filename=f"atelier-{output.pk}-{output.sha256[:10]}{suffix}",
    )
    response["Cache-Control"] = "private, max-age=86400"  # content-addressed: never changes
    return response


@login_required
@require_POST
def output_delete(request: HttpRequest, project_id: int, output_id: int) -> HttpResponse:
    access, output = selectors.output_access(
        user=request.user, project_id=project_id, output_id=output_id
    )
    services.output_delete(output=output, actor=request.user, role=access.role, request=request)
    messages.success(request, "Deleted")
    return redirect("galleries:index", access.project.pk)


@login_required
@require_POST
def collection_create(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    try:
        board = services.collection_create(
            project=access.project,
            name=request.POST.get("name", ""),
            actor=request.user,
            request=request,
        )
    except ValidationError as exc:
        for msg in exc.messages:
            messages.error(request, msg)
        return redirect("galleries:index", access.project.pk)
    gallery = reverse("galleries:index", kwargs={"project_id": access.project.pk})
    return redirect(f"{gallery}?collection={board.pk}")


@login_required
@require_POST
def collection_toggle(request: HttpRequest, project_id: int, output_id: int) -> HttpResponse:
    access, output = selectors.output_access(
        user=request.user, project_id=project_id, output_id=output_id, need="launch_job"
    )
    collection_id = request.POST.get("collection", "")
    board = (
        Collection.objects.filter(project=access.project, pk=collection_id).first()
        if collection_id.isdecimal()
        else None
    )
    if board is None:
        raise Http404("No such board")
    added = services.collection_toggle(collection=board, output=output)
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"in_collection": added})
    messages.success(request, f"{'Added to' if added else 'Removed from'} {board.name}")
    return redirect("galleries:output", access.project.pk, output.pk)


@login_required
@require_POST
def output_upload(request: HttpRequest, project_id: int) -> HttpResponse:
    """An image from the user's computer into the gallery: an init or control image.

    A browser is sent back to the gallery with the reason as a message; a script that asks for
    JSON gets 400 and the reason, so a refusal is never only said on a page.
    """
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    wants_json = request.headers.get("Accept") == "application/json"
    try:
        output = services.output_upload(
            project=access.project,
            actor=request.user,
            upload=request.FILES.get("file"),
            request=request,
        )
    except ValidationError as exc:
        if wants_json:
            return JsonResponse({"error": "; ".join(exc.messages)}, status=400)
        for msg in exc.messages:
            messages.error(request, msg)
        return redirect("galleries:index", access.project.pk)
    if wants_json:
        return JsonResponse(
            {"id": output.pk, "width": output.width, "height": output.height}, status=201
        )
    messages.success(request, "Uploaded")
    return redirect("galleries:output", access.project.pk, output.pk)


@login_required
@require_POST
def png_info(request: HttpRequest, project_id: int) -> JsonResponse:
    """Upload any PNG with A1111 `parameters`: the parameters come back for the generation form."""
    from workers.imaging.infotext import (
        PngTextError,
        parse_infotext,
        read_png_parameters,
        to_form_fields,
    )

    project_access(user=request.user, project_id=project_id)
    upload = request.FILES.get("file")
    if upload is None:
        return JsonResponse({"error": "Send the PNG as multipart field 'file'"}, status=400)
    if upload.size > 50 * 1024 * 1024:
        return JsonResponse({"error": "PNG larger than 50 MB"}, status=400)
    try:
        text = read_png_parameters(upload)  # reads the chunks it needs, not the whole file
    except PngTextError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except ValueError as exc:
        return JsonResponse({"error": f"Not a PNG: {exc}"}, status=400)
    if not text:
        return JsonResponse({"error": "This PNG has no generation parameters"}, status=404)
    parsed = parse_infotext(text)
    try:
        fields = to_form_fields(parsed)
    except Exception:  # unknown labels: the raw parameters are still useful
        fields = {}
    return JsonResponse(
        {"parameters": text, "parsed": parsed, "fields": fields}, json_dumps_params={"default": str}
    )


@login_required
@require_POST
def outputs_score(request: HttpRequest, project_id: int) -> HttpResponse:
    """Rank the filtered gallery's text outputs with a reward model: an outputs.score job (the
    finetunes app's kind, by name); its page shows progress, and the gallery then sorts by it."""
    from apps.jobs import services as job_services

    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    filters = selectors.GalleryFilters.from_query(request.POST)
    ids = selectors.outputs_to_score(access=access, user=request.user, filters=filters)
    back = reverse("galleries:index", kwargs={"project_id": access.project.pk})
    if not ids:
        messages.error(request, _("No text outputs to score in this view of the gallery."))
        return redirect(back)
    try:
        job = job_services.job_create(
            project=access.project,
            kind="outputs.score",
            params={"adapter_id": request.POST.get("adapter_id", ""), "output_ids": ids},
            created_by=request.user,
            request=request,
        )
    except job_services.JobParamsError as exc:
        for msg in exc.errors.values():
            messages.error(request, msg)
        return redirect(back)
    messages.success(
        request,
        _("Scoring %(count)s text outputs; when the job is done, sort the gallery by its score.")
        % {"count": len(ids)},
    )
    return redirect(job)
