"""The review inbox: flagged outputs and dataset versions awaiting approval, across the projects
where the user reviews, with their flags' matched spans."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Prefetch
from django.utils import timezone
from django.utils.translation import gettext

from apps.datasets.decisions import decision_options
from apps.datasets.models import Approval, DatasetVersion
from apps.moderation.models import Flag
from apps.moderation.services import highlight
from apps.outputs.models import Moderation, Output
from apps.projects.models import Membership, Project, Role
from apps.projects.selectors import ProjectAccess

INBOX_LIMIT = 200
AGES = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
KINDS = ("text", "image", "dataset")


def review_accesses(*, user) -> dict[int, ProjectAccess]:
    """The projects where this user may review, with their access (superusers: every project)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return {}
    if user.is_superuser:
        return {p.pk: ProjectAccess(project=p, role=Role.ADMIN) for p in Project.objects.all()}
    rows = Membership.objects.filter(
        user=user, role__in=(Role.ADMIN, Role.REVIEWER)
    ).select_related("project")
    return {m.project_id: ProjectAccess(project=m.project, role=m.role) for m in rows}


@dataclass
class Filters:
    category: str = ""
    project: int | None = None
    kind: str = ""
    age: str = ""  # older than: "1h", "1d", "7d"

    @classmethod
    def from_query(cls, query) -> Filters:
        project = query.get("project") or ""
        return cls(
            category=(query.get("category") or "")[:64],
            project=int(project) if project.isdigit() else None,
            kind=query.get("kind") if query.get("kind") in KINDS else "",
            age=query.get("age") if query.get("age") in AGES else "",
        )


@dataclass
class InboxItem:
    key: str  # "output:12" or "dataset:5"
    kind: str  # text | image | dataset
    item_id: int
    project: Project
    created_at: Any
    author: str
    title: str
    categories: list[str] = field(default_factory=list)
    fields: list[dict[str, Any]] = field(default_factory=list)  # {"name", "pieces"}
    obj: Any = None
    ruleset_version: int | None = None
    own: bool = False
    # Why this user may not decide on the item at all (its checkbox is disabled), or may not
    # approve or reject it: the words the server would refuse with, shown before it is asked.
    refusal: str | None = None
    approve_refusal: str | None = None
    reject_refusal: str | None = None

    @property
    def post_value(self) -> str:
        """What the inbox form posts for this item: "<output|dataset>:<project>:<id>"."""
        return f"{self.key.split(':')[0]}:{self.project.pk}:{self.item_id}"


def _output_item(output: Output, user) -> InboxItem:
    own = output.created_by_id == user.pk
    flags = list(output.flags.all())
    hits = [h for f in flags for h in f.hits]
    fields = []
    for name in ("prompt", "negative_prompt", "text"):
        text = getattr(output, name) or ""
        field_hits = [h for h in hits if h.get("field") == name]
        if text or field_hits:
            fields.append({"name": name, "pieces": highlight(text[:20000], field_hits)})
    classifier = [h for h in hits if h.get("field") == "classifier"]
    if classifier:
        fields.append({"name": "classifier", "pieces": [(h["text"], h) for h in classifier]})
    return InboxItem(
        key=f"output:{output.pk}",
        kind=output.kind,
        item_id=output.pk,
        project=output.project,
        created_at=output.created_at,
        author=output.created_by.get_username() if output.created_by else "",
        title=(output.prompt or output.text or "")[:120],
        categories=sorted({c for f in flags for c in f.categories}),
        fields=fields,
        obj=output,
        ruleset_version=flags[0].ruleset_version if flags else None,
        own=own,
        refusal=gettext("Yours: another reviewer decides.") if own else None,
    )


def _dataset_item(version: DatasetVersion, user, access: ProjectAccess) -> InboxItem:
    report = getattr(version, "moderation_report", None) or {}
    # The version page's own rule (four eyes over the lineage, a PII scan before approval), so
    # the inbox and that page never disagree about what this reviewer may do.
    options = decision_options(version=version, actor=user, role=access.role)
    return InboxItem(
        key=f"dataset:{version.pk}",
        kind="dataset",
        item_id=version.pk,
        project=version.dataset.project,
        created_at=version.created_at,
        author=version.created_by.get_username() if version.created_by else "",
        title=f"{version.dataset.name} v{version.number}",
        categories=sorted(report.get("by_category", {})),
        obj=version,
        ruleset_version=report.get("ruleset_version"),
        own=version.created_by_id == user.pk,
        refusal=options.refusal,
        approve_refusal=options.approve_refusal,
        reject_refusal=options.reject_refusal,
    )


def inbox_items(*, user, filters: Filters | None = None) -> list[InboxItem]:
    """The queue, oldest first (what waited longest comes first), filtered."""
    filters = filters or Filters()
    accesses = review_accesses(user=user)
    projects = [p for p in accesses if filters.project in (None, p)]
    cutoff = timezone.now() - AGES[filters.age] if filters.age else None
    items: list[InboxItem] = []
    if filters.kind in ("", "text", "image"):
        outputs = (
            Output.objects.filter(project_id__in=projects, moderation=Moderation.FLAGGED)
            .select_related("project", "created_by")
            .prefetch_related(Prefetch("flags", queryset=Flag.objects.order_by("-id")))
            .order_by("created_at", "id")
        )
        if filters.kind:
            outputs = outputs.filter(kind=filters.kind)
        if cutoff:
            outputs = outputs.filter(created_at__lte=cutoff)
        items += [_output_item(o, user) for o in outputs[:INBOX_LIMIT]]
    if filters.kind in ("", "dataset"):
        versions = (
            DatasetVersion.objects.filter(
                dataset__project_id__in=projects, approval=Approval.PENDING
            )
            .select_related("dataset__project", "created_by")
            .order_by("created_at", "id")
        )
        if cutoff:
            versions = versions.filter(created_at__lte=cutoff)
        items += [
            _dataset_item(v, user, accesses[v.dataset.project_id]) for v in versions[:INBOX_LIMIT]
        ]
    if filters.category:
        items = [i for i in items if filters.category in i.categories]
    items.sort(key=lambda i: (i.created_at, i.key))
    return items[:INBOX_LIMIT]


def inbox_count(*, user) -> int:
    """The header badge: how many items wait for this reviewer (two COUNT queries)."""
    projects = list(review_accesses(user=user))
    if not projects:
        return 0
    outputs = Output.objects.filter(project_id__in=projects, moderation=Moderation.FLAGGED)
    versions = DatasetVersion.objects.filter(
        dataset__project_id__in=projects, approval=Approval.PENDING
    )
    return outputs.count() + versions.count()


def output_decision(*, output: Output):
    """The decision on an output, if any (shown to its author on the output and job pages)."""
    from apps.review.models import ReviewDecision

    return ReviewDecision.objects.filter(output=output).select_related("decided_by").first()
