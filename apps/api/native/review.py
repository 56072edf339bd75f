"""Review: the project's queue of flagged outputs, decisions on them (approve, or reject with a
reason) and the decisions made. Reviewers and admins only, as the review inbox; decided through
apps.review.services.output_decide (once per output, never by its author, audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from apps.api.errors import ApiError
from apps.api.native.common import ERRORS, MAX_ID, PageQuery, page, username
from apps.projects import selectors as project_selectors
from apps.review import selectors as review_selectors
from apps.review import services as review_services
from apps.review.models import ReviewDecision

router = Router(tags=["review"])
QUEUE_MAX = review_selectors.INBOX_LIMIT


class Piece(Schema):
    text: str
    hit: dict[str, Any] | None = Field(..., description="The rule or classifier that matched")


class QueueField(Schema):
    name: str = Field(..., description="prompt, negative_prompt, text or classifier")
    pieces: list[Piece]


class QueueItem(Schema):
    output: int
    kind: Literal["text", "image"]
    created_at: datetime
    author: str
    title: str
    categories: list[str]
    ruleset_version: int | None
    own: bool = Field(..., description="The caller made it: another reviewer must decide")
    fields: list[QueueField] = Field(..., description="Its texts with the flagged spans")


class QueuePage(Schema):
    data: list[QueueItem]
    has_more: bool = Field(..., description="More outputs wait beyond `limit`")


class QueueQuery(Schema):
    limit: int = Field(50, ge=1, le=QUEUE_MAX)
    kind: Literal["text", "image"] | None = None
    category: str | None = Field(None, max_length=64, description="Only flags of this category")


class DecisionIn(Schema):
    output: int = Field(..., ge=1, le=MAX_ID, description="A flagged output of the project")
    decision: Literal["approve", "reject"]
    reason: str = Field("", max_length=review_services.MAX_REASON, description="Required to reject")


class DecisionOut(Schema):
    id: int
    output: int
    decision: Literal["approved", "rejected"]
    reason: str
    decided_by: str
    decided_at: datetime
    categories: list[str] = Field(..., description="The flags' categories it was decided on")
    ruleset_version: int | None


class DecisionPage(Schema):
    data: list[DecisionOut]
    has_more: bool


class DecisionList(PageQuery):
    decision: Literal["approved", "rejected"] | None = None
    output: int | None = Field(None, ge=1, le=MAX_ID)


def decision_json(d: ReviewDecision) -> dict:
    return {
        "id": d.pk,
        "output": d.output_id,
        "decision": d.decision,
        "reason": d.reason,
        "decided_by": username(d.decided_by),
        "decided_at": d.decided_at,
        "categories": [str(c) for c in d.categories or []],
        "ruleset_version": d.ruleset_version,
    }


def _queue_item(item) -> dict:
    return {
        "output": item.item_id,
        "kind": item.kind,
        "created_at": item.created_at,
        "author": item.author,
        "title": item.title,
        "categories": item.categories,
        "ruleset_version": item.ruleset_version,
        "own": item.own,
        "fields": [
            {"name": f["name"], "pieces": [{"text": t, "hit": h} for t, h in f["pieces"]]}
            for f in item.fields
        ],
    }


@router.get(
    "/projects/{int:project_id}/review/queue/",
    url_name="review_queue",
    response={200: QueuePage, **ERRORS},
)
def review_queue(request: HttpRequest, project_id: int, q: Query[QueueQuery]):
    """Flagged outputs awaiting a decision, oldest first (what waited longest comes first), as
    the review inbox shows them. A decided output leaves the queue: ask again for the next."""
    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="review"
    )
    filters = review_selectors.Filters(
        project=access.project.pk, kind=q.kind or "", category=q.category or ""
    )
    items = [
        i
        for i in review_selectors.inbox_items(user=request.user, filters=filters)
        if i.kind != "dataset"  # dataset versions are decided on their own page
    ]
    return {"data": [_queue_item(i) for i in items[: q.limit]], "has_more": len(items) > q.limit}


@router.post(
    "/projects/{int:project_id}/review/decisions/",
    url_name="review_decisions",
    response={201: DecisionOut, **ERRORS},
)
def decide(request: HttpRequest, project_id: int, body: DecisionIn):
    """Approve or reject a flagged output (a reason is required to reject). 409 when it is not
    awaiting review (decided already, or never flagged); 400 for your own output."""
    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="review"
    )
    try:
        decision = review_services.output_decide(
            access=access,
            actor=request.user,
            output_id=body.output,
            approve=body.decision == "approve",
            reason=body.reason,
            request=request,
        )
    except review_services.AlreadyDecided as exc:
        raise ApiError(409, " ".join(exc.messages), code="not_flagged", param="output") from None
    except ValidationError as exc:
        message = " ".join(exc.messages)
        param = "reason" if not body.reason.strip() and body.decision == "reject" else "output"
        raise ApiError(400, message, param=param) from None
    return Status(201, decision_json(decision))


@router.get(
    "/projects/{int:project_id}/review/decisions/",
    url_name="review_decisions",
    response={200: DecisionPage, **ERRORS},
)
def list_decisions(request: HttpRequest, project_id: int, q: Query[DecisionList]):
    """Decisions made on the project's outputs, newest first. Like the audit log that records
    them: for reviewers and admins."""
    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="view_audit"
    )
    qs = ReviewDecision.objects.filter(project=access.project).select_related("decided_by")
    if q.decision:
        qs = qs.filter(decision=q.decision)
    if q.output is not None:
        qs = qs.filter(output_id=q.output)
    rows, more = page(qs, q)
    return {"data": [decision_json(d) for d in rows], "has_more": more}
