from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from apps.datasets import services
from apps.datasets.licenses import LICENSES
from apps.datasets.models import Dataset, Schema
from apps.projects.models import Project


class UploadForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=_(
            "CSV/TSV, JSONL, JSON, Alpaca, ShareGPT, OpenAI chat, preference pairs, or a zip of images with captions"
        ),
    )
    name = forms.CharField(label=_("Dataset name"), max_length=200, required=False)
    description = forms.CharField(
        label=_("Description"), widget=forms.Textarea(attrs={"rows": 2}), required=False
    )
    license = forms.ChoiceField(label=_("License"), choices=[("", "—")] + LICENSES, required=False)
    source = forms.CharField(
        label=_("Source"),
        max_length=500,
        required=False,
        help_text=_("Where the data comes from: organisation, URL, agreement"),
    )

    # Detected unless chosen: UTF-8 (with or without BOM), UTF-16/32 with a BOM, else GBK. The
    # others are for files the detection refuses ("looks like another encoding", "not UTF-8").
    encoding = forms.ChoiceField(
        label=_("Encoding"),
        choices=[
            ("", _("Detect (UTF-8, GBK)")),
            ("utf-8", "UTF-8"),
            ("gb18030", "GBK / GB18030"),
            ("big5", "Big5"),
            ("shift_jis", "Shift-JIS"),
            ("euc-kr", "EUC-KR"),
            ("cp1252", "Windows-1252 / Latin-1"),
            ("utf-16", "UTF-16"),
        ],
        required=False,
        help_text=_("Text files only; leave it to detection unless the file is refused"),
    )

    def __init__(self, *args: Any, project: Project, target: Dataset | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.project, self.target = project, target

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:  # the fields' own errors first: the rules below need valid fields
            return cleaned
        f = cleaned["file"]
        if f.size > settings.ATELIER_MAX_UPLOAD_BYTES:
            self.add_error(
                "file",
                f"The file is {f.size:,} bytes; the limit is {settings.ATELIER_MAX_UPLOAD_BYTES:,}",
            )
        elif self.target is None:  # a new dataset: its compliance fields, checked before staging
            try:
                services.dataset_check_new(
                    project=self.project,
                    name=cleaned["name"] or "",
                    license=cleaned["license"] or "",
                    source=cleaned["source"] or "",
                )
            except ValidationError as exc:
                for field, msgs in messages_of(exc).items():
                    for msg in msgs:
                        self.add_error(field if field in self.fields else None, msg)
        return cleaned

    def meta(self) -> dict[str, Any]:
        """What the mapping step needs from this one (kept next to the staged file)."""
        meta = {
            k: self.cleaned_data[k]
            for k in ("name", "description", "license", "source", "encoding")
        }
        meta["dataset"] = self.target.pk if self.target else None
        return meta


class MappingForm(forms.Form):
    schema = forms.ChoiceField(label=_("Records are"), choices=Schema.choices)
    template = forms.CharField(
        label=_("Prompt template"), widget=forms.Textarea(attrs={"rows": 3}), required=False
    )
    validation_fraction = forms.FloatField(
        label=_("Validation share"), min_value=0.0, max_value=0.5, initial=0.1
    )
    seed = forms.IntegerField(label=_("Split seed"), initial=42)

    def __init__(self, data=None, *, target: Dataset | None, suggested_schema: str | None):
        from workers.data.canonical import DEFAULT_TEMPLATES

        initial: dict[str, Any] = {
            "schema": target.schema if target else (suggested_schema or "qa"),
            "validation_fraction": 0.1,
            "seed": 42,
        }
        last = target.latest_version if target else None
        initial["template"] = (
            last.template
            if last and last.template
            else DEFAULT_TEMPLATES.get(initial["schema"], "")
        )
        if last:
            initial.update(validation_fraction=last.validation_fraction, seed=last.split_seed)
        super().__init__(data, initial=initial)

    def clean(self) -> dict[str, Any]:
        from workers.data.canonical import SCHEMAS

        cleaned = super().clean()
        schema = cleaned.get("schema")
        if schema:  # the role_<role> selects of the chosen schema; empty ones are left out
            columns = {role: self.data.get(f"role_{role}", "") for role in SCHEMAS[schema].roles}
            cleaned["columns"] = {role: col for role, col in columns.items() if col}
        return cleaned


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", _("Approve")), ("reject", _("Reject"))])
    comment = forms.CharField(
        label=_("Comment"), widget=forms.Textarea(attrs={"rows": 2}), max_length=2000
    )


def messages_of(error: ValidationError) -> dict[str, list[str]]:
    if hasattr(error, "message_dict"):
        return error.message_dict
    return {"__all__": list(error.messages)}
