"""Output reads, and the one visibility rule every door uses: outputs whose moderation state is
not clean or approved (flagged, rejected) are seen only by their author, reviewers and admins
(platform superusers are admins everywhere).

The doors: the gallery and its files, boards and PNG info; the image and playground pages; job
pages, job results and job events (the spine applies `jobs_with_visible_content` through its
registry hook); websockets; job params that name an output (the kinds' checks use
`visible_outputs_for`); the API. tests/test_moderation_doors.py enumerates them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from apps.jobs.states import JobState
from apps.outputs.models import Moderation, Output
from apps.projects.models import Project, Role
from apps.projects.selectors import ProjectAccess, project_access

VISIBLE_TO_ALL = (Moderation.CLEAN, Moderation.APPROVED)
SEES_EVERY_OUTPUT = frozenset({Role.ADMIN, Role.REVIEWER})
# What a job result entry naming a hidden output keeps (the rest, its text and image links, goes).
RESULT_ENTRY_KEYS = ("output_id", "id")


def sees_every_output(access: ProjectAccess) -> bool:
    """Reviewers and admins see every output of the project, whatever its moderation state."""
    return access.role in SEES_EVERY_OUTPUT


def _visible_q(*, access: ProjectAccess, user) -> Q | None:
    """The rule as a filter; None when this viewer sees every output of the project."""
    if sees_every_output(access):
        return None
    everyone = Q(moderation__in=VISIBLE_TO_ALL)
    author_pk = getattr(user, "pk", None)
    # No user (a system job): only what everyone sees, never the outputs that have no author.
    return everyone | Q(created_by_id=author_pk) if author_pk is not None else everyone


def visible_outputs(*, access: ProjectAccess, user) -> QuerySet[Output]:
    """The project's outputs this member may see."""
    qs = Output.objects.filter(project=access.project)
    rule = _visible_q(access=access, user=user)
    return qs if rule is None else qs.filter(rule)


def access_or_none(*, project: Project, user) -> ProjectAccess:
    """The user's access to the project for the rule, never raising: a non-member or no user
    (a system job) gets no role, so sees only what every member sees."""
    try:
        return project_access(user=user, project_id=project.pk)
    except (Http404, PermissionDenied):
        return ProjectAccess(project=project, role="")


def visible_outputs_for(*, project: Project, user) -> QuerySet[Output]:
    """visible_outputs for a submitting user (job params that name an output): the kinds'
    checks and runners ask here, so a member cannot feed a flagged image into a job."""
    return visible_outputs(access=access_or_none(project=project, user=user), user=user)


def output_visible(output: Output, *, access: ProjectAccess, user) -> bool:
    """The rule for one output already in hand (no query)."""
    if output.project_id != access.project.pk:
        return False
    if sees_every_output(access) or output.moderation in VISIBLE_TO_ALL:
        return True
    author_pk = getattr(user, "pk", None)
    return author_pk is not None and output.created_by_id == author_pk


def hidden_output_ids(ids: Iterable[int], *, access: ProjectAccess, user) -> set[int]:
    """Of these output ids, those this viewer may not see (gone or not in the project count as
    hidden too); one query, none for an empty list."""
    wanted = {int(i) for i in ids}
    if not wanted:
        return set()
    seen = visible_outputs(access=access, user=user).filter(pk__in=wanted)
    return wanted - set(seen.values_list("pk", flat=True))


def jobs_with_visible_content(*, access: ProjectAccess, user, jobs: Iterable[Any]) -> set[int]:
    """Of these jobs, those whose generated content (streamed text, previews, prompts) this
    viewer may see: every job for reviewers and admins, and her own jobs for the author; another
    member's job only once it succeeded and every output it made is visible to this viewer, so
    nothing unchecked streams live to other members. One query at most, for all the jobs.

    Registered with the job registry (apps/outputs/apps.py): the spine applies it to events,
    job pages and the API without importing this app."""
    jobs = list(jobs)
    author_pk = getattr(user, "pk", None)
    if sees_every_output(access):
        return {j.pk for j in jobs}
    shown = {j.pk for j in jobs if author_pk is not None and j.created_by_id == author_pk}
    waiting = [j.pk for j in jobs if j.pk not in shown and j.state == JobState.SUCCEEDED]
    if waiting:
        rule = _visible_q(access=access, user=user)
        hiding = set(
            Output.objects.filter(job_id__in=waiting)
            .exclude(rule)
            .values_list("job_id", flat=True)
            .distinct()
        )
        shown.update(pk for pk in waiting if pk not in hiding)
    return shown


def result_output_ids(result: Any) -> set[int]:
    """The outputs a job result names: entries with an `output_id`, and the entries of an
    `outputs` list (image jobs' `{"id": …, "url": …}`)."""
    found: set[int] = set()
    for entry, key in _result_entries(result):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            found.add(value)
    return found


def _result_entries(node: Any, parent_key: str = ""):
    """(entry, id key) for every dict in a result that names an output."""
    if isinstance(node, dict):
        if "output_id" in node:
            yield node, "output_id"
        elif parent_key == "outputs" and "id" in node:
            yield node, "id"
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _result_entries(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _result_entries(item, parent_key)


def result_for_viewer(result: Any, *, hidden: set[int]) -> Any:
    """A job result with every entry naming a hidden output cut down to its id and
    `"withheld": true` (its text, image links and the rest removed)."""
    if not hidden or not isinstance(result, dict | list):
        return result
    return _strip(result, hidden, "")


def _strip(node: Any, hidden: set[int], parent_key: str) -> Any:
    if isinstance(node, list):
        return [_strip(item, hidden, parent_key) for item in node]
    if not isinstance(node, dict):
        return node
    key = "output_id" if "output_id" in node else ("id" if parent_key == "outputs" else None)
    if key is not None and node.get(key) in hidden:
        return {k: node[k] for k in RESULT_ENTRY_KEYS if k in node} | {"withheld": True}
    return {k: _strip(v, hidden, k) for k, v in node.items()}


def results_for_viewer(*, access: ProjectAccess, user, jobs: Iterable[Any]) -> dict[int, Any]:
    """Each job's result as this viewer may see it, keyed by job id: one query for all."""
    jobs = list(jobs)
    named = set().union(*(result_output_ids(j.result) for j in jobs)) if jobs else set()
    hidden = hidden_output_ids(named, access=access, user=user)
    return {j.pk: result_for_viewer(j.result, hidden=hidden) for j in jobs}


def job_page_outputs(*, access: ProjectAccess, user, job) -> dict:
    """The images a job made, for its page (registered with the job registry's page extras)."""
    return {
        "outputs": list(
            visible_outputs(access=access, user=user).filter(job=job, kind="image")[:24]
        )
    }
