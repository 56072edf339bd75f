from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext

from apps.audit.services import audit_record
from apps.outputs.models import Collection, Output
from apps.outputs.services import output_create, thumbnail_name, write_thumbnail
from apps.projects.models import Role
from workers.imaging.credentials import credentialed_path

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage


@transaction.atomic
def output_delete(*, output: Output, actor, role: str, request=None) -> None:
    """Admins and the author may delete an output; its files go with it."""
    if role != Role.ADMIN and output.created_by_id != actor.pk:
        raise PermissionDenied(gettext("Only the author or a project admin can delete this output"))
    files = {p for p in (output.file_path, output.thumb_path) if p}
    audit_record(
        action="output.delete",
        actor=actor,
        project=output.project,
        target=output,
        request=request,
        data={"kind": output.kind, "sha256": output.sha256},
    )
    output.delete()
    # Files are content-addressed: the same image made twice is one file. Keep those that
    # another output still uses.
    files -= set(
        Output.objects.filter(file_path__in=files).values_list("file_path", flat=True)
    ) | set(Output.objects.filter(thumb_path__in=files).values_list("thumb_path", flat=True))
    root = Path(settings.MEDIA_ROOT)
    if output.file_path in files:  # its Content Credentials copy goes with the image file
        files.add(str(credentialed_path(output.file_path)))

    def remove_files():
        for rel in files:
            (root / rel).unlink(missing_ok=True)

    transaction.on_commit(remove_files)


def collection_create(*, project, name: str, actor, request=None) -> Collection:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A board needs a name"})
    if Collection.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"A board named {name!r} exists"})
    board = Collection.objects.create(project=project, name=name, created_by=actor)
    audit_record(
        action="collection.create", actor=actor, project=project, target=board, request=request
    )
    return board


def collection_toggle(*, collection: Collection, output: Output) -> bool:
    """Add the output to the board, or remove it if it is there; True when it is now in the board."""
    if collection.project_id != output.project_id:
        raise ValidationError("The output and the board belong to different projects")
    if collection.outputs.filter(pk=output.pk).exists():
        collection.outputs.remove(output)
        return False
    collection.outputs.add(output)
    return True


UPLOAD_MAX_BYTES = 30 * 1024 * 1024
UPLOAD_MAX_PIXELS = 4096 * 4096
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
_USE = "use PNG, JPEG or WebP"


def _read_upload(upload) -> bytes:
    """The upload's bytes, refused when missing, empty, too large, or a PNG with too much text."""
    from workers.imaging.infotext import PngTextError, check_png_text

    if upload is None:
        raise ValidationError({"file": "Choose an image file"})
    if upload.size > UPLOAD_MAX_BYTES:
        raise ValidationError({"file": f"{upload.name}: larger than 30 MB"})
    data = upload.read()
    if not data:
        raise ValidationError({"file": f"{upload.name}: the file is empty (0 bytes)"})
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        # Pillow inflates every text chunk, before and after the image data, up to 1 MiB each and
        # 64 MiB in all, and raises ValueError past that: check them first, within our limits.
        try:
            check_png_text(data)
        except PngTextError as exc:
            raise ValidationError({"file": f"{upload.name}: {exc}"}) from None
    return data


def _decode_upload(upload, data: bytes) -> PILImage:
    """The image decoded upright (EXIF orientation applied) as 8-bit RGB or RGBA, its metadata
    left behind. Refused, with a reason and never a Python repr: not a PNG/JPEG/WebP still image,
    more than 4096 x 4096 pixels (checked from the header, before decoding), animated, damaged,
    or in a colour mode that cannot be converted. 16-bit and float images are scaled to 8 bit,
    not clipped; palettes with transparency keep it."""
    from workers.data.images import ImageRefused, open_still_image, to_8bit

    try:
        image = to_8bit(
            open_still_image(data, formats=UPLOAD_FORMATS, max_pixels=UPLOAD_MAX_PIXELS)
        )
    except ImageRefused as exc:
        reason = str(exc)
        other_format = re.match(r"(\w+) images are not supported", reason)
        if other_format:
            reason = f"{other_format.group(1)} images are not accepted; {_USE}"
        elif reason.endswith("(a decompression bomb?)"):  # a photo too large, most likely
            reason = reason.replace(
                f"the limit is {UPLOAD_MAX_PIXELS:,} (a decompression bomb?)",
                f"the limit is 4096 x 4096 = {UPLOAD_MAX_PIXELS:,}",
            )
        elif reason.startswith(("not an image", "is empty")):
            reason += f"; not accepted, {_USE}"
        elif reason.startswith("is a damaged"):
            reason += "; not accepted"
        raise ValidationError({"file": f"{upload.name}: {reason}"}) from None
    return image.convert("RGB") if image.mode == "L" else image


def _write_files(
    out_dir: Path, sha: str, png: bytes, image: PILImage, written: list[Path]
) -> tuple[Path, Path]:
    """The PNG and its thumbnail under their content names; `written` gets each file made here
    (one already there is another output's as well, and stays whatever happens next)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{sha}.png"
    if not target.exists():
        target.write_bytes(png)
        written.append(target)
    thumb = out_dir / thumbnail_name(image, sha)
    if thumb.exists():
        pass
    elif write_thumbnail(image, thumb):
        written.append(thumb)
    else:  # 129-256 px: the image is its own thumbnail
        thumb = target
    return target, thumb


def output_upload(*, project, actor, upload, request=None) -> Output:
    """An image from the user's computer into the gallery (for img2img, ControlNet or upscaling).

    Stored as a PNG named by its SHA-256 with a thumbnail; no AI disclosure is written (it is
    not generated here) and the original's metadata is dropped. Refused, with nothing written:
    not PNG/JPEG/WebP, larger than 30 MB or 4096 x 4096 px, a PNG whose text chunks go past
    the infotext reader's limits (1 MiB of text once inflated), animated, or damaged; each with
    a reason that says which. Stored upright (EXIF orientation applied) in 8-bit RGB(A).
    """
    import hashlib
    import io

    image = _decode_upload(upload, _read_upload(upload))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    png = buffer.getvalue()
    sha = hashlib.sha256(png).hexdigest()
    rel_dir = Path("outputs") / str(project.pk)
    out_dir = Path(settings.MEDIA_ROOT) / rel_dir
    written: list[Path] = []
    try:
        target, thumb = _write_files(out_dir, sha, png, image, written)
        with transaction.atomic():
            output = output_create(
                project_id=project.pk,
                kind="image",
                params={"uploaded": upload.name[:200]},
                sha256=sha,
                file_path=str(rel_dir / target.name),
                thumb_path=str(rel_dir / thumb.name),
                width=image.width,
                height=image.height,
                tags=["upload"],
                created_by_id=actor.pk if actor is not None else None,
            )
            audit_record(
                action="output.upload",
                actor=actor,
                project=project,
                target=output,
                request=request,
                data={"name": upload.name[:200], "sha256": sha},
            )
    except Exception:
        for path in written:  # nothing half-done stays in the media folder
            path.unlink(missing_ok=True)
        raise
    return output
