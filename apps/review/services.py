"""Reviewers' decisions. An output is decided once (a conditional UPDATE from `flagged`: of two
reviewers deciding at the same moment one wins, the other is told), never by its author, and
every decision is audited once. Dataset versions are decided through the datasets app's own
`version_decide` (four eyes over the lineage), which the inbox calls."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext

from apps.audit.services import audit_record
from apps.datasets.models import Approval, DatasetVersion
from apps.datasets.services import version_decide
from apps.jobs.events import ring
from apps.jobs.models import EventKind
from apps.jobs.services import job_append_events
from apps.moderation.models import Flag
from apps.outputs.models import Moderation, Output
from apps.projects.selectors import ProjectAccess
from apps.review.models import Decision, ReviewDecision
from apps.webhooks.services import output_decided_emit

MAX_REASON = 2000


class AlreadyDecided(ValidationError):
    pass


def output_decide(
    *,
    access: ProjectAccess,
    actor,
    output_id: int,
    approve: bool,
    reason: str,
    request=None,
) -> ReviewDecision:
    """Approve or reject one flagged output of `access.project`."""
    if not access.can("review"):
        raise PermissionDenied(gettext("Only reviewers and admins decide on outputs"))
    reason = (reason or "").strip()[:MAX_REASON]
    if not approve and not reason:
        raise ValidationError("Say why it is rejected (a reason is required)")
    output = Output.objects.filter(pk=output_id, project=access.project).first()
    if output is None:
        raise ValidationError(f"No output {output_id} in this project")
    if output.created_by_id is not None and output.created_by_id == actor.pk:
        raise ValidationError(f"Output #{output.pk} is yours: another reviewer must decide on it")
    flags = list(Flag.objects.filter(output=output).order_by("-id"))
    categories = sorted({c for f in flags for c in f.categories})
    ruleset_version = flags[0].ruleset_version if flags else None
    target = Moderation.APPROVED if approve else Moderation.REJECTED
    with transaction.atomic():
        changed = Output.objects.filter(pk=output.pk, moderation=Moderation.FLAGGED).update(
            moderation=target
        )
        if not changed:
            current = Output.objects.filter(pk=output.pk).values_list("moderation", flat=True)
            raise AlreadyDecided(
                f"Output #{output.pk} is not awaiting review (it is {current.first()})"
            )
        decision = ReviewDecision.objects.create(
            project=access.project,
            output=output,
            decision=Decision.APPROVED if approve else Decision.REJECTED,
            reason=reason,
            decided_by=actor,
            categories=categories,
            ruleset_version=ruleset_version,
        )
        audit_record(
            action="review.approve" if approve else "review.reject",
            actor=actor,
            project=access.project,
            target=output,
            request=request,
            data={
                "kind": output.kind,
                "reason": reason,
                "categories": categories,
                "ruleset_version": ruleset_version,
                "author": output.created_by.get_username() if output.created_by else "",
            },
        )
        if output.job_id:
            # The author (and anyone on the job page) sees the decision live, and it stays in
            # the job's history.
            job_append_events(
                job_id=output.job_id,
                events=[
                    (
                        EventKind.LOG,
                        {
                            "message": _decision_line(output, decision, actor),
                            "level": "info",
                            "review": {
                                "output_id": output.pk,
                                "decision": decision.decision,
                                "reason": reason,
                            },
                        },
                    )
                ],
            )
        # Webhooks' outbox: the deliveries commit with the decision.
        output_decided_emit(decision=decision, output=output)
        project_id = access.project.pk
        transaction.on_commit(lambda: _ring_review(project_id))
    return decision


def _decision_line(output: Output, decision: ReviewDecision, actor) -> str:
    verb = "approved" if decision.decision == Decision.APPROVED else "rejected"
    line = f"Review: output #{output.pk} {verb} by {actor.get_username()}"
    return f"{line}: {decision.reason}" if decision.reason else line


def _ring_review(project_id: int) -> None:
    ring(f"review.{project_id}", {"type": "review.changed", "project": project_id})


def dataset_decide(
    *,
    access: ProjectAccess,
    actor,
    version_id: int,
    approve: bool,
    reason: str,
    request=None,
) -> DatasetVersion:
    """Approve or reject a dataset version awaiting approval (the datasets app's rules apply)."""
    version = (
        DatasetVersion.objects.select_related("dataset")
        .filter(pk=version_id, dataset__project=access.project)
        .first()
    )
    if version is None:
        raise ValidationError(f"No dataset version {version_id} in this project")
    if version.approval != Approval.PENDING:
        raise AlreadyDecided(f"{version} is not awaiting approval (it is {version.approval})")
    decided = version_decide(
        version=version,
        actor=actor,
        role=access.role,
        approve=approve,
        comment=reason or ("Approved" if approve else ""),
        request=request,
    )
    project_id = access.project.pk
    transaction.on_commit(lambda: _ring_review(project_id))
    return decided


@dataclass
class ItemResult:
    key: str
    ok: bool
    message: str = ""


def decide_many(
    *,
    accesses: dict[int, ProjectAccess],
    actor,
    items: list[tuple[str, int, int]],
    approve: bool,
    reason: str,
    request=None,
) -> list[ItemResult]:
    """Decide a batch from the inbox: items are (kind "output"|"dataset", project id, id). Each
    is decided on its own (one refused item does not undo the others); the results say which."""
    results = []
    for kind, project_id, item_id in items:
        key = f"{kind}:{item_id}"
        access = accesses.get(project_id)
        try:
            if access is None:
                raise ValidationError("Not found")
            if kind == "output":
                output_decide(
                    access=access,
                    actor=actor,
                    output_id=item_id,
                    approve=approve,
                    reason=reason,
                    request=request,
                )
            elif kind == "dataset":
                dataset_decide(
                    access=access,
                    actor=actor,
                    version_id=item_id,
                    approve=approve,
                    reason=reason,
                    request=request,
                )
            else:
                raise ValidationError(f"Unknown item kind {kind!r}")
        except (ValidationError, PermissionDenied) as exc:
            message = "; ".join(getattr(exc, "messages", None) or [str(exc)])
            results.append(ItemResult(key, False, message))
        else:
            results.append(ItemResult(key, True))
    return results
