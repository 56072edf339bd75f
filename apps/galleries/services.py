from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.audit.services import audit_record
from apps.outputs.models import Collection, Output
from apps.projects.models import Role


@transaction.atomic
def output_delete(*, output: Output, actor, role: str, request=None) -> None:
    """Admins and the author may delete an output; its files go with it."""
    if role != Role.ADMIN and output.created_by_id != actor.pk:
        raise PermissionDenied("Only the author or a project admin can delete this output")
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
