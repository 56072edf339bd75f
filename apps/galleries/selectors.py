"""Gallery reads. Visibility is the outputs app's one rule (apps/outputs/selectors.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from django.db.models import F, FloatField, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import Http404

from apps.outputs.models import Collection, Moderation, Output
from apps.outputs.selectors import visible_outputs
from apps.projects.selectors import ProjectAccess, project_access

PAGE_SIZE = 48
# Text outputs one "score" action sends to the reward model (the job kind's own cap).
MAX_SCORED = 500
_REWARD_SORT = re.compile(r"^reward-([0-9]{1,18})$")


def reward_key(adapter_id: int) -> str:
    """The key of a reward model's score in Output.metrics["reward"]. Not the bare id: the ORM
    reads an int-like JSON key as an array index (SQLite), and the gallery sorts on this key."""
    return f"adapter-{adapter_id}"


@dataclass
class GalleryFilters:
    q: str = ""
    kind: str = ""
    model: int | None = None
    adapter: int | None = None
    author: str = ""
    status: str = ""
    tag: str = ""
    since: date | None = None
    until: date | None = None
    collection: int | None = None
    # Sort by a reward model's score (best first, unscored last): the adapter's id; None: newest.
    reward: int | None = None

    @classmethod
    def from_query(cls, query) -> GalleryFilters:
        def as_int(name):
            try:
                return int(query.get(name)) if query.get(name) else None
            except ValueError:
                return None

        def as_date(name):
            try:
                return date.fromisoformat(query.get(name)) if query.get(name) else None
            except ValueError:
                return None

        return cls(
            q=query.get("q", "").strip()[:200],
            kind=query.get("kind", ""),
            model=as_int("model"),
            adapter=as_int("adapter"),
            author=query.get("author", "").strip()[:150],
            status=query.get("status", ""),
            tag=query.get("tag", "").strip()[:64],
            since=as_date("since"),
            until=as_date("until"),
            collection=as_int("collection"),
            reward=int(m.group(1)) if (m := _REWARD_SORT.match(query.get("sort", ""))) else None,
        )

    @property
    def sort(self) -> str:
        return f"reward-{self.reward}" if self.reward else ""


def gallery(*, access: ProjectAccess, user, filters: GalleryFilters) -> QuerySet[Output]:
    """The filtered gallery, newest first, with everything a grid card shows joined in (no N+1).
    `provenance` is the reverse one-to-one to the output's on-chain record (the badge)."""
    qs = visible_outputs(access=access, user=user).select_related(
        "base_model", "adapter", "created_by", "provenance"
    )
    f = filters
    if f.q:
        # Every word must appear in the prompt (or the generated text).
        for word in f.q.split()[:8]:
            qs = qs.filter(Q(prompt__icontains=word) | Q(text__icontains=word))
    if f.kind in ("text", "image"):
        qs = qs.filter(kind=f.kind)
    if f.model:
        qs = qs.filter(base_model_id=f.model)
    if f.adapter:
        qs = qs.filter(adapter_id=f.adapter)
    if f.author:
        qs = qs.filter(created_by__username=f.author)
    if f.status in Moderation.values:
        qs = qs.filter(moderation=f.status)
    if f.tag:
        qs = (
            qs.filter(tags__contains=[f.tag])
            if _json_contains_supported()
            else qs.filter(tags__icontains=f'"{f.tag}"')
        )
    if f.since:
        qs = qs.filter(created_at__date__gte=f.since)
    if f.until:
        qs = qs.filter(created_at__date__lte=f.until)
    if f.collection:
        qs = qs.filter(collections__id=f.collection, collections__project=access.project)
    if f.reward:
        # Only text outputs have a score; `reward_score` is shown on the cards.
        score = Cast(KT(f"metrics__reward__{reward_key(f.reward)}"), FloatField())
        return (
            qs.filter(kind="text")
            .annotate(reward_score=score)
            .order_by(F("reward_score").desc(nulls_last=True), "-created_at", "-id")
        )
    return qs.order_by("-created_at", "-id")


def outputs_to_score(*, access: ProjectAccess, user, filters: GalleryFilters) -> list[int]:
    """The ids of the text outputs a "score" action ranks: the filtered gallery's, newest first,
    at most MAX_SCORED."""
    qs = gallery(
        access=access, user=user, filters=GalleryFilters(**{**filters.__dict__, "reward": None})
    )
    return list(qs.filter(kind="text").values_list("pk", flat=True)[:MAX_SCORED])


def _json_contains_supported() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


def output_access(
    *, user, project_id: int, output_id: int, need: str = "view"
) -> tuple[ProjectAccess, Output]:
    access = project_access(user=user, project_id=project_id, need=need)
    output = (
        visible_outputs(access=access, user=user)
        .select_related("base_model", "adapter", "created_by", "job", "provenance")
        .filter(pk=output_id)
        .first()
    )
    if output is None:
        raise Http404("No such output")
    return access, output


def project_collections(*, access: ProjectAccess) -> list[Collection]:
    return list(Collection.objects.filter(project=access.project))


def output_review_context(*, output: Output) -> dict:
    """The decision on an output (its author sees who decided and why) or its flags' categories
    while it waits. Read by relation name: galleries does not import the review apps."""
    decision = getattr(output, "decision", None)  # a reverse one-to-one: None when undecided
    categories = sorted({c for flag in output.flags.all() for c in flag.categories})
    return {"decision": decision, "flag_categories": categories}
