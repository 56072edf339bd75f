"""What the inbox's codes are called on screen: item kinds (the `kind` filter's values) and the
fields of an output the flags were found in."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy

KIND_LABELS: dict[str, Promise] = {
    "text": pgettext_lazy("review item kind", "Text"),
    "image": pgettext_lazy("review item kind", "Image"),
    "dataset": pgettext_lazy("review item kind", "Dataset"),
}

FIELD_LABELS: dict[str, Promise] = {
    "prompt": pgettext_lazy("flagged field", "Prompt"),
    "negative_prompt": pgettext_lazy("flagged field", "Negative prompt"),
    "text": pgettext_lazy("flagged field", "Text"),
    "classifier": pgettext_lazy("flagged field", "Classifier"),
}


def kind_label(code: str) -> str:
    """An inbox item kind's name for people (the stored code where unknown)."""
    return str(KIND_LABELS.get(code, code))


def field_label(name: str) -> str:
    """A flagged field's name for people (the field's own name where unknown)."""
    return str(FIELD_LABELS.get(name, name))
