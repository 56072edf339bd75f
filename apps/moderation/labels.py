"""What the moderation codes are called on screen. The codes (OpenAI's category names, "pii",
"custom", the severities) are what rules, flags and filters store and send; people read these."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy

CATEGORY_LABELS: dict[str, Promise] = {
    "harassment": pgettext_lazy("moderation category", "Harassment"),
    "harassment/threatening": pgettext_lazy("moderation category", "Harassment: threatening"),
    "hate": pgettext_lazy("moderation category", "Hate"),
    "hate/threatening": pgettext_lazy("moderation category", "Hate: threatening"),
    "self-harm": pgettext_lazy("moderation category", "Self-harm"),
    "self-harm/intent": pgettext_lazy("moderation category", "Self-harm: intent"),
    "self-harm/instructions": pgettext_lazy("moderation category", "Self-harm: instructions"),
    "sexual": pgettext_lazy("moderation category", "Sexual"),
    "sexual/minors": pgettext_lazy("moderation category", "Sexual: minors"),
    "violence": pgettext_lazy("moderation category", "Violence"),
    "violence/graphic": pgettext_lazy("moderation category", "Violence: graphic"),
    "illicit": pgettext_lazy("moderation category", "Illicit"),
    "illicit/violent": pgettext_lazy("moderation category", "Illicit: violent"),
    "pii": pgettext_lazy("moderation category", "Personal data"),
    "custom": pgettext_lazy("moderation category", "Custom"),
}

SEVERITY_LABELS: dict[str, Promise] = {
    "block": pgettext_lazy("moderation severity", "Block"),
    "flag": pgettext_lazy("moderation severity", "Flag"),
}

RULE_KIND_LABELS: dict[str, Promise] = {
    "keyword": pgettext_lazy("moderation rule kind", "Keyword"),
    "regex": pgettext_lazy("moderation rule kind", "Regular expression"),
}


def category_label(code: str) -> str:
    """A category's name for people; a code this version does not know is shown as stored."""
    return str(CATEGORY_LABELS.get(code, code))


def severity_label(code: str) -> str:
    """A severity's name for people (the stored code where unknown)."""
    return str(SEVERITY_LABELS.get(code, code))


def rule_kind_label(code: str) -> str:
    """A rule kind's name for people (the stored code where unknown)."""
    return str(RULE_KIND_LABELS.get(code, code))
