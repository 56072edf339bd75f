"""The audit page's filters, read from the query string and validated like any form."""

from __future__ import annotations

from django import forms
from django.core.validators import RegexValidator
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from apps.audit.selectors import AuditFilters

FORMATS = (("", _("Page")), ("csv", "CSV"), ("jsonl", "JSONL"))
# ISO dates whatever the language: what <input type="date"> sends and shows.
DATE_FORMATS = ["%Y-%m-%d"]
DATE_WIDGET = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class AuditFilterForm(forms.Form):
    action = forms.CharField(
        label=_("Action"),
        required=False,
        max_length=64,
        validators=[
            RegexValidator(
                r"^[a-z0-9_.-]+$",
                _("Lower-case letters, digits, dots, dashes and underscores only"),
            )
        ],
        help_text=_("Matches the start: review. finds every review decision."),
    )
    actor = forms.CharField(
        label=_("Who"),
        required=False,
        max_length=150,
        validators=[RegexValidator(r"^[\w.@+-]+$", _("Not a valid username"))],
    )
    date_from = forms.DateField(
        label=_("From"), required=False, input_formats=DATE_FORMATS, widget=DATE_WIDGET
    )
    date_to = forms.DateField(
        label=_("To"), required=False, input_formats=DATE_FORMATS, widget=DATE_WIDGET
    )
    target_type = forms.CharField(
        label=_("Target type"),
        required=False,
        max_length=64,
        validators=[
            RegexValidator(r"^[a-z0-9_]+$", _("Lower-case letters, digits and underscores only"))
        ],
        help_text=_("For example output, datasetversion, rulesetversion."),
    )
    format = forms.ChoiceField(label=_("Format"), required=False, choices=FORMATS)

    def __init__(self, data=None, **kwargs):
        # Only the keys this form knows: `page` and anything else in the URL are not ours.
        known = {k: data.get(k) for k in self.base_fields if k in data} if data else {}
        super().__init__(known, **kwargs)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end date is before the start date"))
        return cleaned

    def filters(self) -> AuditFilters:
        data = self.cleaned_data
        return AuditFilters(
            action=data.get("action") or "",
            actor=data.get("actor") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            target_type=data.get("target_type") or "",
        )

    def query(self) -> str:
        """The validated filters as a query string (for the export links and the pager)."""
        query = QueryDict(mutable=True)
        for name in ("action", "actor", "date_from", "date_to", "target_type"):
            value = self.cleaned_data.get(name) if self.is_valid() else None
            if value:
                query[name] = value.isoformat() if hasattr(value, "isoformat") else value
        return query.urlencode()
