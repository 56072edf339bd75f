"""/v1/images/generations and /v1/images/edits: OpenAI's image shapes over `image.generate` jobs.

A request is an ordinary image job of the token's project (the kind's checks, prompt
moderation, compute budget and audit apply as on the images page), waited for, and answered
with its PNGs as `b64_json` (with their A1111 infotext and AI disclosure, as in the gallery).
Every image is a gallery Output, moderated and reviewable like the others.

`model`: an image base model id (naming.py; default: the first enabled image model). `size`
"WxH" (multiples of 8, 16 to 2048; default the model's native size, else 512x512). Atelier's
extensions: negative_prompt, seed, steps, cfg_scale, sampler; for edits `strength` (img2img
denoising, default 0.75). Edits are img2img: the uploaded image becomes a gallery upload (as
from the gallery's upload button) and the job's init image; a `mask` (OpenAI's rule: its fully
transparent pixels are redrawn) makes it an inpainting job (apps/images/uploads.mask_create):
the pixels outside the mask come back unchanged.
`response_format: "url"` answers signed links that work without a login for
ATELIER["SIGNED_LINK_SECONDS"] (an hour, as OpenAI's do; apps/galleries/links.py), absolute with
ATELIER["PUBLIC_URL"] or the request's host.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from ninja import Field, File, Form, Router, Schema
from ninja.files import UploadedFile

from apps.api.errors import ApiError
from apps.api.openai_compat.common import token_project
from apps.api.openai_compat.naming import base_model_id, resolve_model
from apps.api.openai_compat.streaming import cancel_job, refusal, wait_for_job
from apps.galleries.links import signed_link
from apps.galleries.services import output_upload
from apps.images.models import InpaintMask
from apps.images.uploads import mask_create
from apps.jobs import services as job_services
from apps.jobs.states import JobState
from apps.models.models import BaseModel
from apps.outputs.models import Output
from apps.projects.selectors import ProjectAccess
from webapp.public_url import absolute_url

router = Router(tags=["images"])

WAIT_SECONDS = 600.0
DEFAULT_SIZE = 512
MAX_N = 8
SEED_RANGE = 2**32
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
# The image kind's fields by the name the client used for them.
PARAM_NAMES = {
    "model_id": "model",
    "width": "size",
    "height": "size",
    "batch_size": "n",
    "init_output_id": "image",
    "denoising_strength": "strength",
    "mask_id": "mask",
}


class ImageOptions(Schema):
    """What both endpoints take (unknown fields, e.g. quality or style, are ignored)."""

    model_config = {"extra": "ignore"}

    prompt: str = Field(..., min_length=1, max_length=8000)
    model: str | None = Field(None, max_length=300)
    n: int | None = Field(1, ge=1, le=MAX_N)
    size: str | None = Field(None, max_length=20, description='"WxH" or "auto"')
    response_format: str | None = Field(
        None, description='"b64_json" (the default) or "url": a signed link that works for an hour'
    )
    user: str | None = Field(None, max_length=300)
    # Atelier's extensions.
    negative_prompt: str = Field("", max_length=8000)
    seed: int | None = Field(None, ge=0, le=SEED_RANGE - 1)
    steps: int | None = Field(None, ge=1, le=150)
    cfg_scale: float | None = Field(None, ge=0, le=30)
    sampler: str | None = Field(None, max_length=64)


class ImageEditOptions(ImageOptions):
    strength: float | None = Field(None, ge=0, le=1, description="img2img denoising strength")


class ImageData(Schema):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(Schema):
    created: int
    data: list[ImageData]
    output_format: str = "png"
    size: str
    # Atelier's own: the job, and the gallery outputs that keep the images.
    atelier: dict[str, Any]


def _size(value: str | None, model: BaseModel, fallback: tuple[int, int]) -> tuple[int, int]:
    if value is None or value.strip().lower() in ("", "auto"):
        native = model.info.get("native_size") if isinstance(model.info, dict) else None
        return (int(native), int(native)) if native else fallback
    match = _SIZE.match(value)
    if match is None:
        raise ApiError(400, f'size must be "WxH" (e.g. "512x512"), not {value!r}', param="size")
    width, height = int(match.group(1)), int(match.group(2))
    if not all(16 <= v <= 2048 and v % 8 == 0 for v in (width, height)):
        raise ApiError(
            400, "Width and height must be multiples of 8 from 16 to 2048.", param="size"
        )
    return width, height


def _model(access: ProjectAccess, model_id: str | None) -> tuple[str, BaseModel]:
    if model_id is None:
        first = (
            BaseModel.objects.filter(kind="image", enabled=True)
            .usable_by(access.project.pk)
            .order_by("pk")
            .first()
        )
        if first is None:
            raise ApiError(404, "No image model is enabled here.", param="model")
        return base_model_id(first), first
    base, adapter = resolve_model(access, model_id, kind="image")
    if adapter is not None:
        raise ApiError(
            400,
            "Image LoRAs are used through <lora:name:weight> tags in the prompt, with a base "
            "image model as `model`.",
            code="model_not_supported",
            param="model",
        )
    return model_id, base


def _check(body: ImageOptions) -> None:
    if body.response_format not in (None, "b64_json", "url"):
        raise ApiError(
            400,
            'response_format must be "b64_json" or "url".',
            code="unsupported_parameter",
            param="response_format",
        )


def _params(body: ImageOptions, base: BaseModel, size: tuple[int, int]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model_id": base.pk,
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "width": size[0],
        "height": size[1],
        "batch_size": body.n or 1,
        # Drawn here when not given, so the job (and its record) names it.
        "seed": body.seed if body.seed is not None else secrets.randbelow(SEED_RANGE),
    }
    for name in ("steps", "cfg_scale", "sampler"):
        if getattr(body, name) is not None:
            params[name] = getattr(body, name)
    return params


def _create(request: HttpRequest, access: ProjectAccess, params: dict[str, Any]):
    try:
        return job_services.job_create(
            project=access.project,
            kind="image.generate",
            params=params,
            created_by=request.user,
            request=request,
        )
    except job_services.JobParamsError as exc:
        raise refusal(exc, PARAM_NAMES) from None


def _answer(
    request: HttpRequest, access: ProjectAccess, job_id: int, size, *, as_url: bool = False
) -> dict[str, Any]:
    """Wait for the job; its images as b64_json (or signed links), in the order it made them."""
    job = async_to_sync(wait_for_job)(job_id, timeout=WAIT_SECONDS)
    if job is None:
        cancel_job(job_id, request.user)
        raise ApiError(
            504,
            f"The image job {job_id} did not finish within {WAIT_SECONDS:.0f} s; it was cancelled.",
            code="timeout",
        )
    if job.state != JobState.SUCCEEDED:
        reason = job.error.strip()[:1000] if job.state == JobState.FAILED else "it was cancelled"
        raise ApiError(
            409 if job.state == JobState.CANCELLED else 500,
            f"The image job {job.pk} did not succeed: {reason or 'no reason given'}",
            code="job_cancelled" if job.state == JobState.CANCELLED else "generation_failed",
            headers={"x-should-retry": "false"},
        )
    ids = [o["output_id"] for o in (job.result or {}).get("outputs", [])]
    outputs = Output.objects.filter(pk__in=ids, project=access.project).in_bulk()
    root = Path(settings.MEDIA_ROOT)
    data = []
    for pk in ids:
        output = outputs[pk]
        if as_url:
            link = signed_link(output=output, user=request.user)
            data.append({"url": absolute_url(link, request)})
        else:
            encoded = base64.b64encode((root / output.file_path).read_bytes()).decode("ascii")
            data.append({"b64_json": encoded})
    return {
        "created": int(time.time()),
        "data": data,
        "output_format": "png",
        "size": f"{size[0]}x{size[1]}",
        "atelier": {
            "job_id": job.pk,
            "output_ids": ids,
            "seeds": [outputs[pk].seed for pk in ids],
            "moderation": [outputs[pk].moderation for pk in ids],
        },
    }


@router.post("/images/generations", url_name="image_generations", response=ImagesResponse)
def image_generations(request: HttpRequest, body: ImageOptions):
    """txt2img with an image model of this Atelier; the PNGs as base64 or signed links."""
    _check(body)
    access = token_project(request, need="launch_job")
    _, base = _model(access, body.model)
    size = _size(body.size, base, (DEFAULT_SIZE, DEFAULT_SIZE))
    job = _create(request, access, _params(body, base, size))
    return _answer(request, access, job.pk, size, as_url=body.response_format == "url")


def _upload_size(upload) -> tuple[int, int]:
    """The uploaded image's size made a valid job size (multiples of 8, 16 to 1024)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(upload) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError):
        return DEFAULT_SIZE, DEFAULT_SIZE  # output_upload refuses it with the reason
    finally:
        upload.seek(0)
    return tuple(max(16, min(1024, v // 8 * 8)) for v in (width, height))  # type: ignore[return-value]


def _forget_upload(output: Output) -> None:
    """The upload's files, when the job was refused and its row rolled back (no other output
    uses the same content-named files)."""
    root = Path(settings.MEDIA_ROOT)
    for rel in {output.file_path, output.thumb_path} - {""}:
        if not Output.objects.filter(file_path=rel).exists() and not (
            Output.objects.filter(thumb_path=rel).exists()
        ):
            (root / rel).unlink(missing_ok=True)


def _forget_mask(mask: InpaintMask) -> None:
    """A mask written for a refused edit whose row was rolled back (unless another row has it)."""
    if not InpaintMask.objects.filter(file_path=mask.file_path).exists():
        (Path(settings.MEDIA_ROOT) / mask.file_path).unlink(missing_ok=True)


@router.post("/images/edits", url_name="image_edits", response=ImagesResponse)
def image_edits(
    request: HttpRequest,
    body: Form[ImageEditOptions],
    image: File[UploadedFile],
    # An optional file: ninja reads `File[...] | None` as a query parameter (never bound).
    mask: UploadedFile | None = File(None),  # noqa: B008
):
    """img2img: the uploaded image (kept as a gallery upload) redrawn after `prompt`; with a
    `mask`, only its fully transparent part (inpainting)."""
    _check(body)
    access = token_project(request, need="launch_job")
    _, base = _model(access, body.model)
    size = _size(body.size, base, _upload_size(image))
    params = _params(body, base, size)
    params["denoising_strength"] = 0.75 if body.strength is None else body.strength
    source: Output | None = None
    made: InpaintMask | None = None
    try:
        with transaction.atomic():
            try:
                source = output_upload(
                    project=access.project, actor=request.user, upload=image, request=request
                )
            except ValidationError as exc:
                messages = exc.message_dict if hasattr(exc, "message_dict") else {}
                raise ApiError(
                    400,
                    " ".join(sum(messages.values(), [])) or " ".join(exc.messages),
                    param="image",
                ) from None
            params["init_output_id"] = source.pk
            if mask is not None:
                try:
                    made = mask_create(
                        project=access.project,
                        actor=request.user,
                        upload=mask,
                        transparent_redraws=True,
                    )
                except ValidationError as exc:
                    raise ApiError(400, " ".join(exc.messages), param="mask") from None
                params["mask_id"] = made.pk
            job = _create(request, access, params)
    except Exception:
        if source is not None:
            _forget_upload(source)
        if made is not None:
            _forget_mask(made)
        raise
    return _answer(request, access, job.pk, size, as_url=body.response_format == "url")
