"""{% kind_labels_json %}: every job kind's label in the active language, as a JSON object for
templates/includes/js_strings.html, so live pages name kinds as the server-rendered ones do."""

from __future__ import annotations

import json

from django import template
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

register = template.Library()


@register.simple_tag
def kind_labels_json() -> SafeString:
    from apps.jobs import registry

    labels = {kind.name: gettext(kind.label) for kind in registry.all_kinds()}
    # Inside <script type="application/json">: no "<" may close the element early.
    text = json.dumps(labels, ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")
    return mark_safe(text)  # noqa: S308  (JSON with "<" escaped, in a JSON script element)


@register.filter
def submitted_ago(when) -> str:
    """ "submitted just now" under a minute (Django's timesince would say "0 minutes"), else
    "submitted 5 minutes ago", in the active language."""
    from django.utils import timezone
    from django.utils.timesince import timesince

    if when is None:
        return ""
    if (timezone.now() - when).total_seconds() < 60:
        return gettext("submitted just now")
    return gettext("submitted %(when)s ago") % {"when": timesince(when)}
