from django import forms
from django.utils.translation import gettext_lazy as _

from apps.datasets.licenses import LICENSES
from apps.datasets.models import Schema


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


class MappingForm(forms.Form):
    schema = forms.ChoiceField(label=_("Records are"), choices=Schema.choices)
    template = forms.CharField(
        label=_("Prompt template"), widget=forms.Textarea(attrs={"rows": 3}), required=False
    )
    validation_fraction = forms.FloatField(
        label=_("Validation share"), min_value=0.0, max_value=0.5, initial=0.1
    )
    seed = forms.IntegerField(label=_("Split seed"), initial=42)


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", _("Approve")), ("reject", _("Reject"))])
    comment = forms.CharField(
        label=_("Comment"), widget=forms.Textarea(attrs={"rows": 2}), max_length=2000
    )
