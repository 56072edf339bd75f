"""Every write of generated (and uploaded) outputs. `output_create` is the one place an Output
row is made: image generation, the text playground and gallery uploads all go through it, so
the checks that must see every output (moderation, provenance) hook in here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.outputs.models import Output

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
    """Record one output (text or image) of a project.

    Not `full_clean()`: its foreign-key checks cost a query each, per image (the callers pass ids
    they just read); the database's constraints still hold."""
    return Output.objects.create(
        project_id=project_id,
        job_id=job_id,
        kind=kind,
        sha256=sha256,
        created_by_id=created_by_id,
        **fields,
    )


def write_thumbnail(image, path: Path) -> bool:
    """Write the grid's thumbnail; False when the image itself serves (128..256 px: no resize)."""
    from PIL import Image

    if THUMB_SIZE // 2 < max(image.size) <= THUMB_SIZE:
        return False
    thumb = image.copy()
    if max(thumb.size) < THUMB_SIZE:  # tiny demo images: scale up crisply for the grid
        factor = max(1, THUMB_SIZE // max(thumb.size))
        thumb = thumb.resize((thumb.width * factor, thumb.height * factor), Image.NEAREST)
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    thumb.save(path, format="PNG")
    return True
