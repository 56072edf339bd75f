"""Filters that name moderation and inbox codes in the active language, so templates keep the
codes as form values and show people the words."""

from __future__ import annotations

from django import template

from apps.moderation.labels import category_label, rule_kind_label, severity_label
from apps.review.labels import field_label, kind_label

register = template.Library()

register.filter("category_label", category_label)
register.filter("severity_label", severity_label)
register.filter("rule_kind_label", rule_kind_label)
register.filter("kind_label", kind_label)
register.filter("field_label", field_label)
