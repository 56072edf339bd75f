"""Every write of generated (and uploaded) outputs. `output_create` is the one place an Output
row is made: image generation, the text playground and gallery uploads all go through it, so
the checks that must see every output (moderation, provenance) hook in here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.outputs.models import Moderation, Output
from workers.imaging.infotext import PNG_COMPRESS_LEVEL

THUMB_SIZE = 256


def output_create(
    *,
    project_id: int,
    kind: str,
    sha256: str,
    created_by_id: int | None,
    job_id: int | None = None,
    verdict=None,
    **fields: Any,
) -> Output:
    """Record one output (text or image) of a project, checked by the project's moderation rules
    (and any installed classifier) before it is visible: a hit makes it `flagged` (seen only by
    its author, reviewers and admins until a reviewer decides) with a Flag holding the spans.

    `verdict`: what :func:`output_check` said of these fields, when the caller checked them
    before its transaction (rule queries and classifiers then hold no write lock).

    Not `full_clean()`: its foreign-key checks cost a query each, per image (the callers pass ids
    they just read); the database's constraints still hold."""
    from apps.moderation.models import Door
    from apps.moderation.services import flag_record

    if verdict is None:
        verdict = output_check(project_id=project_id, kind=kind, fields=fields)
    if verdict.hits:
        fields["moderation"] = Moderation.FLAGGED
    with transaction.atomic():
        output = Output.objects.create(
            project_id=project_id,
            job_id=job_id,
            kind=kind,
            sha256=sha256,
            created_by_id=created_by_id,
            **fields,
        )
        if verdict.hits:
            flag_record(
                project_id=project_id,
                verdict=verdict,
                door=Door.OUTPUT if job_id else Door.UPLOAD,
                output=output,
            )
            transaction.on_commit(lambda: review_doorbell(project_id))
    return output


def output_check(*, project_id: int, kind: str, fields: dict[str, Any]):
    """The moderation verdict output_create would reach for these fields (rules, classifiers)."""
    from apps.moderation.services import output_verdict

    file_path = fields.get("file_path") or ""
    image_path = str(Path(settings.MEDIA_ROOT) / file_path) if file_path else None
    return output_verdict(project_id=project_id, kind=kind, fields=fields, image_path=image_path)


def review_doorbell(project_id: int) -> None:
    """Tell the project's open review inboxes that their queue changed."""
    from apps.jobs.events import ring

    ring(f"review.{project_id}", {"type": "review.changed", "project": project_id})


THUMB_JPEG_QUALITY = 85
# Modes a JPEG thumbnail keeps as they are; others (alpha, palette, 16-bit) stay PNG.
_JPEG_MODES = ("RGB", "L")


def thumbnail_name(image, sha: str) -> str:
    """The grid thumbnail's file name: JPEG for opaque 8-bit images (every generated one), PNG
    where JPEG would lose something (alpha, a palette, 16 bits).

    Measured on a photograph scaled to 512 px (a thumbnail of 256 px): PNG at level 4 took 9.6 ms
    to encode and 121 KB, JPEG at quality 85 0.3 ms and 19 KB (WebP at 80: 7.2 ms, 13 KB). The
    gallery grid loads a sixth of the bytes; the worker's write_image of a 512 px image of the
    bench's tiny model took 37-38 ms of CPU instead of 43-44, beside the next one's denoising.
    Thumbnails written before stay PNG and are served as such."""
    return f"{sha}.thumb.jpg" if image.mode in _JPEG_MODES else f"{sha}.thumb.png"


def write_thumbnail(image, path: Path) -> bool:
    """Write the grid's thumbnail when it saves bytes: only for images larger than THUMB_SIZE,
    as JPEG or PNG by `path`'s suffix (see thumbnail_name).

    False: the image itself serves the grid (a smaller image would only grow as a thumbnail;
    the templates enlarge images of 128 px and less with crisp pixels, class gl-pixel)."""
    if max(image.size) <= THUMB_SIZE:
        return False
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    if path.suffix == ".jpg":
        thumb.save(path, format="JPEG", quality=THUMB_JPEG_QUALITY)
    else:
        thumb.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return True


def served_file(path: Path, which: str) -> tuple[str, str]:
    """An output file's (content type, download name suffix): the image and its C2PA copy are
    PNG; a thumbnail is JPEG or PNG (thumbnail_name)."""
    if which == "c2pa":
        return "image/png", ".c2pa.png"
    if path.suffix == ".jpg":
        return "image/jpeg", ".thumb.jpg"
    return "image/png", ".png"
