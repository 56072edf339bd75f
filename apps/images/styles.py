"""Saved styles (A1111's "Styles"): named prompt snippets shared by a project's members.

The generation form lists them (styles.js); "Apply" merges the chosen style into the prompt
fields the way A1111 does (``{prompt}`` in the style is replaced by the prompt, otherwise the style
is appended after a comma), so the job records the prompt as run and a later edit of the style
never changes what an image says it was made with. Members and admins save styles; a style is
changed or deleted by its author or a project admin. JSON in and out.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from apps.images.models import Style
from apps.projects.models import Role
from apps.projects.selectors import ProjectAccess, project_access


class StyleForm(forms.ModelForm):
    class Meta:
        model = Style
        fields = ["name", "prompt", "negative_prompt"]
        labels = {
            "name": gettext_lazy("Name"),
            "prompt": gettext_lazy("Prompt"),
            "negative_prompt": gettext_lazy("Negative prompt"),
        }

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise ValidationError(_("A style needs a name."))
        return name

    def clean(self):
        data = super().clean()
        if not (data.get("prompt", "").strip() or data.get("negative_prompt", "").strip()):
            raise ValidationError(_("A style needs a prompt or a negative prompt."))
        return data


def style_json(style: Style) -> dict:
    return {
        "id": style.pk,
        "name": style.name,
        "prompt": style.prompt,
        "negative_prompt": style.negative_prompt,
        "created_by_id": style.created_by_id,
    }


def style_save(*, project, actor, data, instance: Style | None = None) -> Style:
    """Create (or change) a style; ValidationError with per-field messages otherwise."""
    form = StyleForm(data, instance=instance)
    if not form.is_valid():
        raise ValidationError(form.errors)
    style = form.save(commit=False)
    style.project = project
    if instance is None:
        style.created_by = actor
    try:
        with transaction.atomic():
            style.save()
    except IntegrityError:
        raise ValidationError(
            {"name": [_("A style with this name exists in the project.")]}
        ) from None
    return style


def _editable(access: ProjectAccess, user, style_id: int) -> Style:
    """The project's style that ``user`` may change: its author's, or any for an admin."""
    style = Style.objects.filter(project=access.project, pk=style_id).first()
    if style is None:
        raise Http404("No such style")
    if access.role != Role.ADMIN and style.created_by_id != user.pk:
        raise PermissionDenied(_("Only the style's author or a project admin can change it."))
    return style


def _errors(exc: ValidationError) -> JsonResponse:
    fields = (
        {k: " ".join(v) for k, v in exc.message_dict.items()} if hasattr(exc, "error_dict") else {}
    )
    message = fields.pop("__all__", "") or " ".join(exc.messages)
    return JsonResponse({"error": {"message": message, "fields": fields}}, status=400)


@login_required
@require_http_methods(["GET", "POST"])
def style_list(request: HttpRequest, project_id: int) -> JsonResponse:
    """GET: the project's styles (anyone in the project); POST: save a new one (members)."""
    if request.method == "GET":
        access = project_access(user=request.user, project_id=project_id)
        styles = Style.objects.filter(project=access.project)
        return JsonResponse({"styles": [style_json(s) for s in styles]})
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    try:
        style = style_save(project=access.project, actor=request.user, data=request.POST)
    except ValidationError as exc:
        return _errors(exc)
    return JsonResponse(style_json(style), status=201)


@login_required
@require_POST
def style_update(request: HttpRequest, project_id: int, style_id: int) -> JsonResponse:
    """Change a style's name, prompt or negative prompt (its author or an admin)."""
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    style = _editable(access, request.user, style_id)
    try:
        style = style_save(
            project=access.project, actor=request.user, data=request.POST, instance=style
        )
    except ValidationError as exc:
        return _errors(exc)
    return JsonResponse(style_json(style))


@login_required
@require_POST
def style_delete(request: HttpRequest, project_id: int, style_id: int) -> JsonResponse:
    """Delete a style (its author or an admin); images made with it keep their prompts."""
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    _editable(access, request.user, style_id).delete()
    return JsonResponse({"deleted": style_id})
