"""Every write of generated (and uploaded) outputs. `output_create` is the one place an Output
row is made: image generation, the text playground and gallery uploads all go through it, so
the checks that must see every output (moderation, provenance) hook in here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.outputs.models import Moderation, Output

THUMB_SIZE = 256


def output_create(
    *,
    project_id: int,
    kind: str,
    sha256: str,
    created_by_id: int | None,
    job_id: int | None = None,
    **fields: Any,
) -> Output:
    """Record one output (text or image) of a project, checked by the project's moderation rules
    (and any installed classifier) before it is visible: a hit makes it `flagged` (seen only by
    its author, reviewers and admins until a reviewer decides) with a Flag holding the spans.

    Not `full_clean()`: its foreign-key checks cost a query each, per image (the callers pass ids
    they just read); the database's constraints still hold."""
    from apps.moderation.models import Door
    from apps.moderation.services import flag_record, output_verdict

    file_path = fields.get("file_path") or ""
    image_path = str(Path(settings.MEDIA_ROOT) / file_path) if file_path else None
    verdict = output_verdict(project_id=project_id, kind=kind, fields=fields, image_path=image_path)
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


def review_doorbell(project_id: int) -> None:
    """Tell the project's open review inboxes that their queue changed."""
    from apps.jobs.events import ring

    ring(f"review.{project_id}", {"type": "review.changed", "project": project_id})


def write_thumbnail(image, path: Path) -> bool:
    """Write the grid's thumbnail; False when the image itself serves (128..256 px: no resize)."""
    from PIL import Image

    if THUMB_SIZE // 2 < max(image.size) <= THUMB_SIZE:
        return False
    thumb = image.copy()
    if max(thumb.size) < THUMB_SIZE:  # tiny demo images: scale up crisply for the grid
        factor = max(1, THUMB_SIZE // max(thumb.size))
        thumb = thumb.resize(
            (thumb.width * factor, thumb.height * factor), Image.Resampling.NEAREST
        )
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    thumb.save(path, format="PNG")
    return True
