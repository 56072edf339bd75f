"""The webhook form of the page: a receiver URL, the events it wants, and whether it is on."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from apps.webhooks import services
from apps.webhooks.models import EventType


class WebhookForm(forms.Form):
    url = forms.CharField(
        label=_("Receiver URL"),
        max_length=2000,
        help_text=_("An https:// (or http://) address that accepts POSTed JSON."),
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/atelier-hook"}),
    )
    events = forms.MultipleChoiceField(
        label=_("Events"),
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        # A new webhook starts subscribed to every event (untick what it should not get).
        initial=lambda: [value for value, _label in EventType.choices],
    )
    active = forms.BooleanField(label=_("Active"), required=False, initial=True)

    def clean_url(self) -> str:
        try:
            return services.clean_url(self.cleaned_data["url"])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["url"]) from None
