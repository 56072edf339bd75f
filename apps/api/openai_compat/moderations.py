"""/v1/moderations: OpenAI's moderation shape, answered by the token's project's own rules.

The check is the one every output gets as it is made (apps.moderation.services.output_verdict:
the project's current rule set, then any installed classifier), so a text this endpoint flags
is a text the project would flag. `categories` has every rule category (OpenAI's, plus "pii"
and "custom"); a category is true when a rule of it matched, and its score is then 1.0 (rules
match or not: there are no probabilities). `flagged` is true when any rule matched. Atelier's
own `atelier` block says which rule set version answered and where each rule matched.
Any project member may ask (it changes nothing).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema

from apps.api.errors import ApiError
from apps.api.openai_compat.common import token_project
from apps.moderation.services import output_verdict
from workers.moderation import CATEGORIES

router = Router(tags=["moderations"])

MAX_INPUTS = 100
MAX_CHARS = 100_000


class ModerationRequest(Schema):
    model_config = {"extra": "ignore"}

    input: str | list[str] | list[dict[str, Any]] = Field(
        ..., description="A text, a list of texts, or text parts ({type: text, text})"
    )
    model: str | None = Field(None, max_length=300)


def _texts(value: str | list[str] | list[dict[str, Any]]) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise ApiError(400, "input must not be empty.", param="input")
    if len(items) > MAX_INPUTS:
        raise ApiError(400, f"At most {MAX_INPUTS} inputs per request.", param="input")
    texts: list[str] = []
    for i, item in enumerate(items):
        text = item.get("text") if isinstance(item, dict) else item
        if isinstance(item, dict) and item.get("type") != "text" or not isinstance(text, str):
            raise ApiError(
                400,
                "Only text inputs are checked here (the project's rules read text).",
                code="unsupported_parameter",
                param=f"input.{i}",
            )
        if len(text) > MAX_CHARS:
            raise ApiError(400, f"Each input is at most {MAX_CHARS} characters.", param="input")
        texts.append(text)
    return texts


def _result(project_id: int, text: str) -> tuple[dict[str, Any], int | None]:
    verdict = output_verdict(project_id=project_id, kind="text", fields={"text": text})
    hit = set(verdict.categories)
    return {
        "flagged": bool(verdict.hits),
        "categories": {c: c in hit for c in CATEGORIES},
        "category_scores": {c: 1.0 if c in hit else 0.0 for c in CATEGORIES},
        "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
        "atelier": {
            "severity": verdict.severity,
            "hits": [
                {k: h.get(k) for k in ("category", "severity", "start", "end", "text")}
                for h in verdict.hits
            ],
        },
    }, verdict.ruleset_version


@router.post("/moderations", url_name="moderations")
def moderations(request: HttpRequest, body: ModerationRequest):
    """Whether the project's moderation rules flag each input, per category."""
    access = token_project(request, need="view")
    texts = _texts(body.input)
    results, version = [], None
    for text in texts:
        result, version = _result(access.project.pk, text)
        results.append(result)
    return {
        "id": f"modr-{uuid.uuid4().hex}",
        "model": f"atelier-rules-v{version}",
        "results": results,
    }
