"""Inpainting masks from the browser: the mask painted over the init image (inpaint.js) or a
mask file, stored as the project's input for an inpainting job (ImageParams.mask_id).

Init and control images dropped or pasted on the form go to the gallery's upload instead
(galleries:upload, called by imagedrop.js): those are pictures people want to find again;
a mask is only an input, kept out of the gallery.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.images.models import InpaintMask
from apps.projects.selectors import project_access

MASK_MAX_BYTES = 10 * 1024 * 1024
MASK_MAX_SIDE = 4096
MASK_FORMATS = ("PNG", "JPEG")


def _read_mask(upload) -> bytes:
    """The upload's bytes; refused when missing, empty, too large, or a PNG with too much text."""
    from workers.imaging.infotext import PngTextError, check_png_text

    if upload is None:
        raise ValidationError(_("Choose a mask image (PNG or JPEG)."))
    if upload.size > MASK_MAX_BYTES:
        raise ValidationError(_("The mask is larger than 10 MB."))
    data = upload.read()
    if not data:
        raise ValidationError(_("The mask file is empty (0 bytes)."))
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        try:  # Pillow inflates text chunks before the pixels: bound them first
            check_png_text(data)
        except PngTextError as exc:
            raise ValidationError(str(exc)) from None
    return data


def _decode_mask(data: bytes, *, transparent_redraws: bool = False):
    """The mask as 8-bit grayscale, white = redraw (transparent counts as black); with
    `transparent_redraws`, OpenAI's rule instead: the fully transparent pixels are redrawn, the
    mask must have an alpha channel and its colours do not matter. Decoded once
    with the dataset upload's checks (workers.data.images): PNG or JPEG only, at most
    4096 x 4096 pixels read from the header before any pixel is allocated, not animated, not
    damaged; each refusal with its reason."""
    from workers.data.images import ImageRefused, open_still_image, to_8bit
    from workers.imaging.inpaint import mask_gray

    try:
        image = to_8bit(
            open_still_image(data, formats=MASK_FORMATS, max_pixels=MASK_MAX_SIDE * MASK_MAX_SIDE)
        )
    except ImageRefused as exc:
        reason = str(exc)
        if reason.startswith("not an image"):
            reason = f"is {reason}"
        template = (
            _("The mask %(reason)s.")
            if reason.startswith(("is ", "has "))
            else _("The mask: %(reason)s.")
        )
        raise ValidationError(template % {"reason": reason}) from None
    if max(image.size) > MASK_MAX_SIDE:
        raise ValidationError(_("The mask is larger than 4096 pixels on a side."))
    gray = _transparent_as_white(image) if transparent_redraws else mask_gray(image)
    if gray.getbbox() is None:
        raise ValidationError(_("The mask is empty: paint the part of the image to redraw."))
    return gray


def _transparent_as_white(image):
    """OpenAI's edit mask (fully transparent = edit) as ours (white = redraw)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        raise ValidationError(
            _(
                "The mask has no transparency: its fully transparent pixels mark what to redraw "
                "(a PNG with an alpha channel)."
            )
        )
    alpha = image.convert("RGBA").getchannel("A")
    return alpha.point(lambda a: 255 if a == 0 else 0)


def mask_create(*, project, actor, upload, transparent_redraws: bool = False) -> InpaintMask:
    """A mask for the project's inpainting jobs, stored as a grayscale PNG named by its SHA-256;
    the same mask uploaded again is the same row. ValidationError (nothing written) otherwise.
    `transparent_redraws`: the upload follows OpenAI's images/edits rule (transparent = redraw)."""
    from workers.imaging.infotext import write_file_durably

    gray = _decode_mask(_read_mask(upload), transparent_redraws=transparent_redraws)
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG", optimize=True)
    png = buffer.getvalue()
    sha = hashlib.sha256(png).hexdigest()
    found = InpaintMask.objects.filter(project=project, sha256=sha).first()
    if found is not None:
        return found
    rel = Path("inputs") / str(project.pk) / "masks" / f"{sha}.png"
    target = Path(settings.MEDIA_ROOT) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    existed = target.exists()
    write_file_durably(target, png)
    try:
        with transaction.atomic():
            return InpaintMask.objects.create(
                project=project,
                created_by=actor,
                sha256=sha,
                file_path=str(rel),
                width=gray.width,
                height=gray.height,
            )
    except IntegrityError:  # the same mask, sent twice at once: the other request's row
        return InpaintMask.objects.get(project=project, sha256=sha)
    except Exception:
        if not existed:
            target.unlink(missing_ok=True)
        raise


def mask_image(mask: InpaintMask):
    """The stored mask as a PIL image (our own PNG, written by mask_create)."""
    from PIL import Image

    with Image.open(Path(settings.MEDIA_ROOT) / mask.file_path) as img:
        return img.convert("L")


@login_required
@require_POST
def mask_upload(request: HttpRequest, project_id: int) -> JsonResponse:
    """POST a mask image as ``file``: 201 with its id (the form's ``mask_id``), or 400 with the
    reason. Members and admins only (the ones who can start the job it is for)."""
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    try:
        mask = mask_create(
            project=access.project, actor=request.user, upload=request.FILES.get("file")
        )
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    return JsonResponse({"id": mask.pk, "width": mask.width, "height": mask.height}, status=201)
