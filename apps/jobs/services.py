"""Every write of the job engine. State changes are conditional UPDATEs: 0 rows = did not happen."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Least, NullIf
from django.db.models.lookups import LessThan
from django.utils import timezone
from django.utils.translation import gettext

from apps.audit.services import audit_record
from apps.jobs import events as doorbell
from apps.jobs import registry
from apps.jobs.models import EventKind, Job, JobEvent, line_order
from apps.jobs.prepared import Prepared
from apps.jobs.states import ACTIVE, TERMINAL, IllegalTransition, JobState, can_transition
from apps.projects.models import Project
from apps.webhooks.services import job_finished_emit
from workers.common.timing import timed

log = logging.getLogger(__name__)

RUN_TASK = "atelier.run_job"
BROKER_EPOCH_KEY = "atelier:broker-epoch"


class JobParamsError(Exception):
    """Params that failed the kind's schema; `errors` maps field name to message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class JobQuotaExceeded(JobParamsError):
    """Refused by a cap, a compute budget or a quota (apps/quotas), with the limit and usage.
    `retry_after`: seconds until the same submit may pass (None: it never will as it is)."""

    def __init__(self, errors: dict[str, str], retry_after: int | None = None):
        super().__init__(errors)
        self.retry_after = retry_after

    def __str__(self) -> str:
        return "; ".join(self.errors.values())


def _cfg(name: str):
    return settings.ATELIER[name]


# --------------------------------------------------------------------------- events


@timed("jobs.append_events")
def job_append_events(
    *,
    job_id: int,
    events: list[tuple[str, dict]],
    attempt: int | None = None,
    progress: float | None = None,
    eta_seconds: float | None = None,
    loaded: Job | None = None,
) -> list[JobEvent] | None:
    """Append events with the next sequence numbers, then ring the doorbell after commit.

    With `attempt`, the write is fenced: it happens only while that attempt still owns the
    running job (a worker that lost its lease writes nothing). Returns None when fenced out.
    `loaded`: the job's row as the caller just read it (with created_by), for the dashboard's
    snapshot instead of reading it again.
    """
    if not events and progress is None:
        return []
    with transaction.atomic():
        end = _reserve_seqs(
            job_id,
            len(events),
            attempt=attempt,
            progress=None if progress is None else max(0.0, min(1.0, progress)),
            eta_seconds=eta_seconds,
        )
        if end is None:
            return None
        start = end - len(events)
        objs = [
            JobEvent(job_id=job_id, seq=start + i + 1, kind=kind, data=data, attempt=attempt or 0)
            for i, (kind, data) in enumerate(events)
        ]
        JobEvent.objects.bulk_create(objs)
        messages = [o.as_message() for o in objs]
        state_changed = any(k == EventKind.STATE for k, _ in events)

        def ring() -> None:
            if messages:
                doorbell.ring_job(job_id, messages)
            doorbell.ring_project(
                job_id,
                state_changed=state_changed,
                load=lambda: loaded or Job.objects.select_related("created_by").get(pk=job_id),
            )

        transaction.on_commit(ring)
    return objs


def _reserve_seqs(
    job_id: int,
    count: int,
    *,
    attempt: int | None,
    progress: float | None,
    eta_seconds: float | None,
) -> int | None:
    """Take the job's next `count` event sequence numbers (and set its progress) in one
    statement: UPDATE ... SET last_seq = last_seq + count ... RETURNING last_seq. The UPDATE
    locks the row until the transaction ends (PostgreSQL; SQLite holds its one write lock), so
    two writers get disjoint ranges. With `attempt`, only while that attempt still owns the
    running job; None when it does not (fenced out) or the job is gone.

    Raw SQL because this runs for every flush of every job: the ORM's SELECT FOR UPDATE + UPDATE
    pair cost ~1.5 ms of Python per flush (bench/api.py's "TEXT row written" stage)."""
    q = connection.ops.quote_name
    sets = [f"{q('last_seq')} = {q('last_seq')} + %s"]
    args: list[Any] = [count]
    if progress is not None:
        sets += [f"{q('progress')} = %s", f"{q('eta_seconds')} = %s"]
        args += [progress, eta_seconds]
    where = f"{q('id')} = %s"
    args.append(job_id)
    if attempt is not None:
        where += f" AND {q('attempt')} = %s AND {q('state')} IN ({', '.join(['%s'] * len(ACTIVE))})"
        args += [attempt, *sorted(ACTIVE)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {q(Job._meta.db_table)} SET {', '.join(sets)} WHERE {where} "
            f"RETURNING {q('last_seq')}",
            args,
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def jobs_last_seq(job_ids: set[int]) -> dict[int, int]:
    """Each existing job's last event sequence number (kept with its events in one statement)."""
    return dict(Job.objects.filter(pk__in=job_ids).order_by().values_list("pk", "last_seq"))


def job_events_after(*, job_id: int, after: int, limit: int = 5000) -> list[JobEvent]:
    """Events with seq > after, in order: what a reconnecting client is missing."""
    return list(JobEvent.objects.filter(job_id=job_id, seq__gt=after).order_by("seq")[:limit])


# --------------------------------------------------------------------------- transitions


def job_transition(
    *,
    job_id: int,
    target: str,
    sources: Sequence[str],
    attempt: int | None = None,
    extra_filter: Q | None = None,
    message: str = "",
    **fields: Any,
) -> bool:
    """Move a job from one of `sources` to `target` with a conditional UPDATE; log a state event."""
    return (
        _transition(
            job_id=job_id,
            target=target,
            sources=sources,
            attempt=attempt,
            extra_filter=extra_filter,
            message=message,
            **fields,
        )
        is not None
    )


def _transition(
    *,
    job_id: int,
    target: str,
    sources: Sequence[str],
    attempt: int | None = None,
    extra_filter: Q | None = None,
    message: str = "",
    **fields: Any,
) -> Job | None:
    """job_transition, returning the job's row as the transition left it (None: no change)."""
    for source in sources:
        if not can_transition(source, target):
            raise IllegalTransition(source, target)
    with transaction.atomic():
        qs = Job.objects.filter(pk=job_id, state__in=list(sources))
        if attempt is not None:
            qs = qs.filter(attempt=attempt)
        if extra_filter is not None:
            qs = qs.filter(extra_filter)
        changed = qs.update(state=target, **fields)
        if not changed:
            return None
        # Read once, as the UPDATE left it: the state event, the dashboards' snapshot and the
        # webhooks' payload all come from this row.
        job = Job.objects.select_related("created_by").get(pk=job_id)
        data = {
            "state": target,
            "attempt": job.attempt,
            "error": job.error if target == JobState.FAILED else "",
        }
        if message:
            data["message"] = message
        job_append_events(job_id=job_id, events=[(EventKind.STATE, data)], loaded=job)
        if target in TERMINAL:
            # Webhooks' outbox: the deliveries commit (or roll back) with the final state.
            job_finished_emit(project_id=job.project_id, state=target, load=lambda: job)
    return job


# --------------------------------------------------------------------------- creation, dispatch


def _submittable_params(
    job_kind: registry.JobKind, params: dict[str, Any], *, project: Project, user
) -> dict[str, Any]:
    """The params, validated by the kind's schema, its check and then every registered submit
    check (blocked prompts); JobParamsError before any row exists, so nothing reaches a worker."""
    clean, errors = registry.validate_params(job_kind, params)
    if errors:
        raise JobParamsError(errors)
    model = job_kind.params.model_validate(clean)
    if job_kind.check is not None:
        errors = job_kind.check(project, model, user=user)
    if not errors:
        errors = registry.submit_checks(project=project, user=user, kind=job_kind, params=model)
    if errors:
        raise JobParamsError(errors)
    return clean


def job_create(
    *,
    project: Project,
    kind: str,
    params: dict[str, Any],
    created_by=None,
    request=None,
    retry_of: Job | None = None,
) -> Job:
    """Validate params against the kind's schema, create the row, and dispatch after commit."""
    try:
        job_kind = registry.get(kind)
    except registry.UnknownKind:
        raise JobParamsError({"kind": f"Unknown job kind {kind!r}"}) from None
    clean = _submittable_params(job_kind, params, project=project, user=created_by)
    from apps.quotas.services import QuotaExceeded, check_job_submit

    with transaction.atomic():
        # One submit per project at a time, so two cannot both pass the last free place of a cap.
        # The same lock lets the new job's slot be counted here, before its row exists (so not
        # between created_at and the message).
        locked = Project.objects.select_for_update().only("max_concurrent_jobs").get(pk=project.pk)
        counts = _active_counts(project, created_by)
        try:
            check_job_submit(
                project=project,
                user=created_by,
                kind=job_kind,
                params=job_kind.params.model_validate(clean),
                active=counts,
            )
        except QuotaExceeded as exc:
            raise JobQuotaExceeded({exc.field: str(exc)}, retry_after=exc.retry_after) from None
        # A slot is free and nobody older waits unsent for one (those go first: dispatch_waiting
        # sends oldest first). Running jobs and sent-but-unclaimed ones take slots, as in
        # _free_slots.
        send_now = counts.waiting == 0 and counts.taken < locked.concurrency_limit
        # A slot is free and nobody older waits: the row is made already marked as sent (no
        # dispatcher sends a marked job, so it is sent once), and its message goes out after the
        # commit, instead of a whole dispatch_waiting round. The claim enforces the limit anyway.
        sent_at = timezone.now() if send_now else None
        job = Job.objects.create(
            project=project,
            created_by=created_by,
            kind=job_kind.name,
            queue=job_kind.queue,
            params=clean,
            max_attempts=_cfg("MAX_ATTEMPTS"),
            retry_of=retry_of,
            last_seq=1,
            dispatched_at=sent_at,
            dispatch_count=1 if send_now else 0,
        )
        project_id, job_id, queue = project.pk, job.pk, job.queue
        # Registered before the events' doorbells: on-commit callbacks run in order, and the
        # worker should get its message before browsers get theirs (bench/dispatch.py).
        if send_now:
            # Not sent (the broker is away): unmarked again, for the dispatcher's next round.
            transaction.on_commit(lambda: _publish_marked(job_id, queue, marked_at=sent_at))
        else:
            transaction.on_commit(lambda: dispatch_waiting(project_id=project_id))
        _insert_state_event(job, seq=1, data={"state": JobState.QUEUED, "attempt": 0, "error": ""})
        audit_record(
            action="job.retry" if retry_of else "job.launch",
            actor=created_by,
            project=project,
            target=job,
            request=request,
            data={"kind": job.kind, "retry_of": retry_of.pk if retry_of else None},
        )
    return job


@dataclass(frozen=True)
class ActiveCounts:
    """Queued and running jobs counted at a submit, in one query: `mine` of the submitting user
    (in every project), `taken` run slots of the project (running jobs and sent-but-unclaimed
    ones) and `waiting` (queued, not sent). The project's queued + running jobs are taken +
    waiting."""

    mine: int
    taken: int
    waiting: int

    @property
    def in_project(self) -> int:
        return self.taken + self.waiting


def _active_counts_query(has_user: bool, *, project_id: int, user_id: int = 0):
    """One row (taken, waiting, mine): an aggregate without GROUP BY (the constant `g` groups
    nothing), so it is a queryset that `Prepared` can compile once."""
    in_project = Q(project_id=project_id)
    queued = Q(state=JobState.QUEUED)
    scope = in_project | Q(created_by_id=user_id) if has_user else in_project
    return (
        Job.objects.filter(scope, state__in=[JobState.QUEUED, *ACTIVE])
        .order_by()
        .values(g=Value(1, output_field=IntegerField()))
        .annotate(
            taken=Count(
                "pk",
                filter=in_project
                & (Q(state__in=ACTIVE) | (queued & Q(dispatched_at__isnull=False))),
            ),
            waiting=Count("pk", filter=in_project & queued & Q(dispatched_at__isnull=True)),
            mine=Count("pk", filter=Q(created_by_id=user_id)) if has_user else Value(0),
        )
        .values_list("taken", "waiting", "mine")
    )


# Every submit counts (prepared: the aggregate's compile cost more than running it).
_ACTIVE_COUNTS = Prepared(
    lambda has_user, *, project_id, user_id=0: _active_counts_query(
        has_user, project_id=project_id, user_id=user_id
    ),
    project_id="int",
    user_id="int",
)
_ACTIVE_COUNTS_PROJECT = Prepared(
    lambda has_user, *, project_id: _active_counts_query(has_user, project_id=project_id),
    project_id="int",
)


def _active_counts(project: Project, user) -> ActiveCounts:
    user_id = getattr(user, "pk", None)
    if user_id is not None:
        rows = _ACTIVE_COUNTS.execute(True, project_id=project.pk, user_id=user_id)
    else:
        rows = _ACTIVE_COUNTS_PROJECT.execute(False, project_id=project.pk)
    taken, waiting, mine = rows[0] if rows else (0, 0, 0)
    return ActiveCounts(mine=mine or 0, taken=taken or 0, waiting=waiting or 0)


def _insert_state_event(job: Job, *, seq: int, data: dict[str, Any]) -> None:
    """A state event at `seq`, which the caller has already reserved in the job's row (created
    with last_seq=1, or claimed with last_seq + 1): what job_append_events does, without reading
    and bumping last_seq. The job's own doorbell and its dashboards' ring after commit; the
    dashboard snapshot is made from `job` (as read or created by the caller, with created_by)."""
    event = JobEvent.objects.create(
        job_id=job.pk, seq=seq, kind=EventKind.STATE, data=data, attempt=0
    )
    messages = [event.as_message()]
    job_id = job.pk

    def ring() -> None:
        doorbell.ring_job(job_id, messages)
        doorbell.ring_project(job_id, state_changed=True, load=lambda: job)

    transaction.on_commit(ring)


@timed("jobs.publish")
def _publish(job_id: int, queue: str) -> bool:
    """Put the job's pointer on its Celery queue. False when the broker could not be reached."""
    from webapp.celery import app

    try:
        app.send_task(
            RUN_TASK,
            args=[job_id],
            queue=queue,
            retry=True,
            retry_policy={
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        )
    except Exception:
        log.warning(
            "could not send job %s to queue %s; the dispatcher will retry",
            job_id,
            queue,
            exc_info=True,
        )
        return False
    return True


def _mark_sent(job_id: int, *, previously=None, now=None) -> bool:
    """Mark a queued job as sent: a conditional UPDATE on its previous `dispatched_at`, so two
    dispatchers racing for the same job mark (and send) it once."""
    same = Q(dispatched_at__isnull=True) if previously is None else Q(dispatched_at=previously)
    return bool(
        Job.objects.filter(same, pk=job_id, state=JobState.QUEUED).update(
            dispatched_at=now or timezone.now(), dispatch_count=F("dispatch_count") + 1
        )
    )


def _publish_marked(job_id: int, queue: str, *, marked_at, previously=None) -> bool:
    if _publish(job_id, queue):
        return True
    # Not sent: unmark it, so the next dispatcher round tries again.
    Job.objects.filter(pk=job_id, state=JobState.QUEUED, dispatched_at=marked_at).update(
        dispatched_at=previously
    )
    return False


@timed("jobs.send")
def _send(job_id: int, queue: str, *, previously=None) -> bool:
    """Mark the queued job as sent, then send it (once, even with dispatchers racing)."""
    now = timezone.now()
    if not _mark_sent(job_id, previously=previously, now=now):
        return False  # claimed, cancelled or sent by someone else meanwhile
    return _publish_marked(job_id, queue, marked_at=now, previously=previously)


def _free_slots(project_id: int) -> int:
    """Run slots a dispatcher may still fill: the limit minus running jobs and jobs already sent
    but not yet claimed (their messages are on their way to a worker)."""
    project = Project.objects.only("max_concurrent_jobs").get(pk=project_id)
    taken = (
        Job.objects.filter(project_id=project_id)
        .filter(Q(state__in=ACTIVE) | Q(state=JobState.QUEUED, dispatched_at__isnull=False))
        .count()
    )
    return max(0, project.concurrency_limit - taken)


# Does a queued job of the project wait unsent? (Prepared: this runs after every job's end.)
_WAITING = Prepared(
    lambda key, *, project_id: Job.objects.filter(
        project_id=project_id, state=JobState.QUEUED, dispatched_at__isnull=True
    ).values_list("pk")[:1],
    project_id="int",
)


@timed("jobs.dispatch_waiting")
def dispatch_waiting(*, project_id: int) -> int:
    """Send the project's never-sent queued jobs, oldest first, into its free run slots.

    Jobs over the limit wait unsent; a finished, failed or re-queued job frees a slot and calls
    this again. Each job is sent once unless a re-send is due (dispatch_pending). Dispatchers of
    one project take turns (the project row is locked while slots are counted and jobs marked):
    two counting the same free slot would each send a different job.
    """
    if not _WAITING.execute(project_id=project_id):
        # Nobody waits unsent (the common case: every finished job calls this). A job that starts
        # waiting after this read calls dispatch_waiting itself once its row is committed.
        return 0
    now = timezone.now()
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project_id).values_list("pk").first()
        free = _free_slots(project_id)
        if free <= 0:
            return 0
        waiting = list(
            Job.objects.filter(
                project_id=project_id, state=JobState.QUEUED, dispatched_at__isnull=True
            )
            .order_by("created_at", "id")
            .values_list("pk", "queue")[:free]
        )
        marked = [(pk, queue) for pk, queue in waiting if _mark_sent(pk, now=now)]
    return sum(_publish_marked(pk, queue, marked_at=now) for pk, queue in marked)


def _broker_lost_its_messages() -> bool:
    """True when Redis no longer holds our epoch key: flushed or restarted empty."""
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        created = client.set(BROKER_EPOCH_KEY, timezone.now().isoformat(), nx=True)
    except Exception:
        log.warning("redis unreachable while checking the broker epoch", exc_info=True)
        return False
    return bool(created)


def dispatch_pending(*, now=None) -> int:
    """The dispatcher: send queued jobs whose message may be lost. At-least-once, made
    harmless by the claim."""
    now = now or timezone.now()
    sent = 0
    if _broker_lost_its_messages():
        # Every pointer in the broker may be gone: forget them all and send again.
        Job.objects.filter(state=JobState.QUEUED).update(dispatched_at=None)
    base = _cfg("REDISPATCH_AFTER")
    # Messages sent long ago but never claimed: re-send with back-off (the broker may be slow
    # because workers are busy, so don't flood it).
    for job in Job.objects.filter(state=JobState.QUEUED, dispatched_at__isnull=False).only(
        "pk", "queue", "dispatched_at", "dispatch_count"
    ):
        wait = base * (2 ** min(max(job.dispatch_count - 1, 0), 6))
        if job.dispatched_at < now - timedelta(seconds=wait):
            sent += _send(job.pk, job.queue, previously=job.dispatched_at)
    for project_id in (
        Job.objects.filter(state=JobState.QUEUED, dispatched_at__isnull=True)
        .values_list("project_id", flat=True)
        .distinct()
    ):
        sent += dispatch_waiting(project_id=project_id)
    return sent


# --------------------------------------------------------------------------- worker side


def _active_in_project():
    """SQL: the running (or cancelling) jobs of the updated job's project."""
    active = (
        Job.objects.filter(project_id=OuterRef("project_id"), state__in=ACTIVE)
        .order_by()
        .values("project_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(active), 0)


def _limit_constants() -> tuple[int, int]:
    """The constants _project_limit embeds: the default limit and the platform's ceiling."""
    from apps.quotas.services import concurrency_ceiling

    return int(_cfg("PROJECT_MAX_CONCURRENT_JOBS")), int(concurrency_ceiling())


def _project_limit(constants: tuple[int, int] | None = None):
    """SQL: Project.concurrency_limit of the updated job's project (its own limit or the
    default, never above the platform's ceiling)."""
    default, ceiling = constants or _limit_constants()
    own = (
        Project.objects.filter(pk=OuterRef("project_id"))
        .order_by()
        .values("max_concurrent_jobs")[:1]
    )
    return Least(Coalesce(NullIf(Subquery(own), 0), default), ceiling)


def _claim_update(key, *, job_id, worker_id, device, now, lease_until):
    """The claim's one conditional UPDATE (a Prepared statement, compiled once per `key`): still
    queued *and* a free slot (fewer active jobs than the project's limit, both counted by the
    database in this statement); with `unless_reordered`, also nothing moved in the owner's line."""
    unless_reordered, constants = key
    claimable = Job.objects.filter(pk=job_id, state=JobState.QUEUED).filter(
        LessThan(_active_in_project(), _project_limit(constants))
    )
    if unless_reordered:
        claimable = claimable.exclude(
            Exists(
                _owner_line(
                    project_id=OuterRef("project_id"),
                    created_by_id=OuterRef("created_by_id"),
                    queue=OuterRef("queue"),
                ).filter(queue_rank__isnull=False)
            )
        )
    return claimable, {
        "state": JobState.RUNNING,
        "attempt": F("attempt") + 1,
        "lease_owner": worker_id,
        "lease_until": lease_until,
        "started_at": Coalesce("started_at", now),
        "attempt_started_at": now,
        "device": device,
        "dispatched_at": None,
        "last_seq": F("last_seq") + 1,  # the seq of its `running` event
    }


_CLAIM = Prepared(
    _claim_update,
    job_id="int",
    worker_id="text",
    device="text",
    now="datetime",
    lease_until="datetime",
)


@timed("jobs.claim")
def job_claim(
    *,
    job_id: int,
    worker_id: str,
    device: str = "",
    unless_reordered: bool = False,
    message: bool = True,
) -> Job | None:
    """Claim a queued job for this worker, respecting the project's concurrency limit.

    Safe to call twice: a second claim (duplicate message, second worker) finds the job no
    longer queued and returns None. ``unless_reordered`` (job_claim_turn's fast path): also
    None when the job's owner has moved any queued job of this line (a queue_rank is set), in
    the same UPDATE, so the common case costs no extra statement. ``message``: the claim uses up
    the job's Celery message, so a job it cannot take is marked unsent (dispatch_waiting sends
    it again); False for a worker's lookahead, which leaves the message on its way.
    """
    lease = timedelta(seconds=_cfg("LEASE_SECONDS"))
    project_of_job = Job.objects.filter(pk=job_id).order_by().values("project_id")[:1]
    with transaction.atomic():
        if connection.features.has_select_for_update:
            # The project first, then the job (dispatch_waiting locks in the same order): two
            # workers can't both take its last free slot. (SQLite needs no row lock: its
            # transactions take the database's one write lock, and the UPDATE below reads and
            # writes under it.)
            Project.objects.select_for_update().filter(pk=Subquery(project_of_job)).values_list(
                "pk"
            ).first()
        now = timezone.now()  # started_at: the claim itself, under the lock
        changed = _CLAIM.execute(
            (unless_reordered, _limit_constants()),
            job_id=job_id,
            worker_id=worker_id,
            device=device[:200],
            now=now,
            lease_until=now + lease,
        )
        if not changed:
            # No longer queued (a duplicate message: nothing to do), or no free slot: then it
            # waits unsent, and dispatch_waiting sends it again when a slot frees.
            if message:
                Job.objects.filter(pk=job_id, state=JobState.QUEUED).update(dispatched_at=None)
            return None
        claimed = Job.objects.select_related("created_by").get(pk=job_id)
        _insert_state_event(
            claimed,
            seq=claimed.last_seq,
            data={
                "state": JobState.RUNNING,
                "attempt": claimed.attempt,
                "error": "",
                "worker": worker_id,
            },
        )
    return claimed


def _owner_line(*, project_id, created_by_id, queue):
    """The owner's queued jobs of one project and queue, first turn first (models.line_order).
    Fields or OuterRefs; a job without an owner is in no line (NULL matches nothing)."""
    return Job.objects.filter(
        project_id=project_id, created_by_id=created_by_id, queue=queue, state=JobState.QUEUED
    ).order_by(*line_order())


def _claim_ahead(*, job_id: int, worker_id: str, device: str) -> Job | None:
    """job_claim, marking the job as run on another job's message (ran_ahead) in the same
    transaction: its own message, on another worker, must see the mark once it sees the claim."""
    with transaction.atomic():
        claimed = job_claim(job_id=job_id, worker_id=worker_id, device=device)
        if claimed is None:
            return None
        Job.objects.filter(pk=job_id).update(ran_ahead=True)
    claimed.ran_ahead = True
    return claimed


@timed("jobs.claim_turn")
def job_claim_turn(*, job_id: int, worker_id: str, device: str = "") -> Job | None:
    """Claim for one Celery message of `job_id`: a message is a turn for its job's owner.

    Celery's queues are FIFO, so an owner's reordering (job_queue_move) is applied here:
    - the message's job is queued, but its owner moved another queued job of the same project
      and queue ahead of it (either has a queue_rank): that job is claimed instead and marked
      ran_ahead; the message's job is unmarked as sent, so dispatch_waiting sends it again when
      a slot frees (as after a claim that found no slot). If that claim fails, job_claim as ever;
    - the message's job is no longer queued and was marked ran_ahead: the mark is cleared (once:
      a conditional UPDATE) and the message is a turn for the owner's first queued job;
    - otherwise job_claim's own contract: a duplicate message does nothing.
    A turn never passes another user's job: it is one of the owner's own messages, and job_claim
    keeps the project's concurrency limit. Until an owner moves a job, nothing changes.
    """
    # The common case in one statement: the job is queued and its owner moved nothing.
    fast = job_claim(job_id=job_id, worker_id=worker_id, device=device, unless_reordered=True)
    if fast is not None:
        return fast
    line = _owner_line(
        project_id=OuterRef("project_id"),
        created_by_id=OuterRef("created_by_id"),
        queue=OuterRef("queue"),
    )
    row = (
        Job.objects.filter(pk=job_id)
        .values("state", "project_id", "created_by_id", "queue", "queue_rank", "ran_ahead")
        .annotate(
            head=Subquery(line.values("pk")[:1]),
            head_rank=Subquery(line.values("queue_rank")[:1]),
        )
        .first()
    )
    if row is None or row["created_by_id"] is None:
        return job_claim(job_id=job_id, worker_id=worker_id, device=device)
    if row["state"] == JobState.QUEUED:
        head = row["head"]
        moved = row["queue_rank"] is not None or row["head_rank"] is not None
        if head is not None and head != job_id and moved:
            claimed = _claim_ahead(job_id=head, worker_id=worker_id, device=device)
            if claimed is not None:
                Job.objects.filter(pk=job_id, state=JobState.QUEUED).update(dispatched_at=None)
                log.info(
                    "job %s runs on the turn of job %s (moved ahead by its owner)", head, job_id
                )
                return claimed
        return job_claim(job_id=job_id, worker_id=worker_id, device=device)
    if not row["ran_ahead"]:
        return None  # a duplicate message: the job was claimed by its own
    used = (
        Job.objects.filter(pk=job_id, ran_ahead=True)
        .exclude(state=JobState.QUEUED)
        .update(ran_ahead=False)
    )
    if not used:
        return None  # another copy of this message took the turn
    head = (
        _owner_line(
            project_id=row["project_id"], created_by_id=row["created_by_id"], queue=row["queue"]
        )
        .values_list("pk", flat=True)
        .first()
    )
    if head is None:
        return None
    return _claim_ahead(job_id=head, worker_id=worker_id, device=device)


def _attempt_usage(job_id: int, *, until=None, share: float = 1.0) -> dict[str, Any]:
    """Fields that add the running attempt's seconds to the job's worker-seconds (usage)."""
    started = Job.objects.filter(pk=job_id).values_list("attempt_started_at", flat=True).first()
    if started is None:
        return {}
    seconds = max(0.0, ((until or timezone.now()) - started).total_seconds()) * share
    return {"worker_seconds": F("worker_seconds") + seconds, "attempt_started_at": None}


def job_heartbeat(*, job_id: int, attempt: int) -> str | None:
    """Renew the lease; returns the job's state, or None when this attempt lost the job."""
    lease_until = timezone.now() + timedelta(seconds=_cfg("LEASE_SECONDS"))
    changed = Job.objects.filter(pk=job_id, attempt=attempt, state__in=ACTIVE).update(
        lease_until=lease_until
    )
    if not changed:
        return None
    return Job.objects.filter(pk=job_id).values_list("state", flat=True).first()


@timed("jobs.finish")
def job_finish(
    *,
    job_id: int,
    attempt: int,
    target: str,
    result: dict | None = None,
    error: str = "",
    usage_share: float = 1.0,
) -> bool:
    """Record the outcome of this attempt (fenced), then start waiting jobs of the project.

    `usage_share`: the part of the attempt's time that was this job's (a batch of N jobs in one
    pipeline call counts 1/N of its time to each)."""
    if target not in TERMINAL:
        raise ValueError(f"{target} is not a final state")
    fields: dict[str, Any] = {
        "finished_at": timezone.now(),
        "lease_until": None,
        "error": error[:10000],
        **_attempt_usage(job_id, share=usage_share),
    }
    if result is not None:
        fields["result"] = result
    if target == JobState.SUCCEEDED:
        fields["progress"] = 1.0
        fields["eta_seconds"] = 0.0
    sources = [s for s in ACTIVE if can_transition(s, target)]
    done = _transition(job_id=job_id, target=target, sources=sources, attempt=attempt, **fields)
    if done is None:
        return False
    project_id = done.project_id
    transaction.on_commit(lambda: dispatch_waiting(project_id=project_id))
    return True


def _give_back(
    *,
    pk: int,
    state: str,
    attempt: int,
    max_attempts: int,
    owner: str,
    why: str,
    extra_filter=None,
    last_alive=None,
) -> bool:
    """A job whose worker is gone: cancelled if it was cancelling, failed when it killed too
    many workers or used up its attempts, otherwise queued again to resume from its last
    checkpoint. Fenced by attempt. `last_alive`: when the worker was last known to run it."""
    from apps.quotas.services import policy

    now = timezone.now()
    usage = _attempt_usage(pk, until=last_alive or now)
    losses = (Job.objects.filter(pk=pk).values_list("worker_losses", flat=True).first() or 0) + 1
    usage["worker_losses"] = F("worker_losses") + 1
    most = policy().max_worker_losses
    if state == JobState.CANCELLING:
        return job_transition(
            job_id=pk,
            target=JobState.CANCELLED,
            sources=[JobState.CANCELLING],
            attempt=attempt,
            extra_filter=extra_filter,
            message=f"worker {owner} lost while cancelling",
            finished_at=now,
            lease_until=None,
            **usage,
        )
    error = ""
    if losses >= most:
        times = "twice" if losses == 2 else ("once" if losses == 1 else f"{losses} times")
        error = (
            f"The worker died {times} running this job (out of memory, a crash or a lost "
            "machine), so it is not retried: lower its size (batch, resolution, sequence "
            "length) or ask an admin to check the worker's log."
        )
    elif attempt >= max_attempts:
        error = f"The worker running this job was lost {attempt} times; giving up."
    if error:
        return job_transition(
            job_id=pk,
            target=JobState.FAILED,
            sources=[JobState.RUNNING],
            attempt=attempt,
            extra_filter=extra_filter,
            finished_at=now,
            lease_until=None,
            error=error,
            **usage,
        )
    return job_transition(
        job_id=pk,
        target=JobState.QUEUED,
        sources=[JobState.RUNNING],
        attempt=attempt,
        extra_filter=extra_filter,
        message=f"worker {owner} {why}; re-queued to resume from the last checkpoint",
        lease_owner="",
        lease_until=None,
        dispatched_at=None,
        **usage,
    )


def reap_expired_leases(*, now=None) -> int:
    """Re-queue running jobs whose worker stopped renewing its lease (killed, lost power)."""
    now = now or timezone.now()
    reaped = 0
    expired = Job.objects.filter(state__in=ACTIVE, lease_until__lt=now).values_list(
        "pk", "state", "attempt", "max_attempts", "project_id", "lease_owner", "lease_until"
    )
    lease = timedelta(seconds=_cfg("LEASE_SECONDS"))
    for pk, state, attempt, max_attempts, project_id, owner, lease_until in list(expired):
        # The lease condition is repeated in the UPDATE: a heartbeat may have renewed it since.
        ok = _give_back(
            pk=pk,
            state=state,
            attempt=attempt,
            max_attempts=max_attempts,
            owner=owner,
            why="stopped renewing its lease",
            extra_filter=Q(lease_until__lt=now),
            # its last renewal (lease_until__lt matched: never None here)
            last_alive=lease_until - lease if lease_until is not None else None,
        )
        if ok:
            reaped += 1
            log.warning("reaped job %s (attempt %s, worker %s)", pk, attempt, owner)
            dispatch_waiting(project_id=project_id)
    return reaped


def job_release_orphans(*, lease_owner: str) -> int:
    """Give back at once the jobs of a worker process known to be dead (its supervisor saw it
    exit), instead of waiting for their leases to expire. Returns how many were released."""
    if not lease_owner:
        return 0
    orphans = Job.objects.filter(state__in=ACTIVE, lease_owner=lease_owner).values_list(
        "pk", "state", "attempt", "max_attempts", "project_id"
    )
    released = 0
    for pk, state, attempt, max_attempts, project_id in list(orphans):
        ok = _give_back(
            pk=pk,
            state=state,
            attempt=attempt,
            max_attempts=max_attempts,
            owner=lease_owner,
            why="exited",
            extra_filter=Q(lease_owner=lease_owner),
        )
        if ok:
            released += 1
            log.warning("released job %s of exited worker %s", pk, lease_owner)
            dispatch_waiting(project_id=project_id)
    return released


def job_requeue_for_shutdown(
    *, job_id: int, attempt: int, worker_id: str, started: bool = True
) -> bool:
    """A warm shutdown stopped this attempt at a checkpoint: queue it again to resume on the next
    worker. A planned stop is not a lost worker, so it does not use up one of the job's attempts.
    ``started`` False: the worker had claimed the job ahead (its Lookahead) and not started it.
    """
    message = (
        f"worker {worker_id} is shutting down; re-queued to resume from its checkpoint"
        if started
        else f"worker {worker_id} stopped before starting this job; re-queued"
    )
    done = job_transition(
        job_id=job_id,
        target=JobState.QUEUED,
        sources=[JobState.RUNNING],
        attempt=attempt,
        message=message,
        lease_owner="",
        lease_until=None,
        dispatched_at=None,
        max_attempts=F("max_attempts") + 1,
        **_attempt_usage(job_id),
    )
    if done:
        project_id = Job.objects.filter(pk=job_id).values_list("project_id", flat=True).first()
        transaction.on_commit(lambda: dispatch_waiting(project_id=project_id))
    return done


# --------------------------------------------------------------------------- user actions


def job_cancel(*, job: Job, actor, request=None) -> bool:
    """Cancel: a queued job at once, a running one cooperatively (cancelling → cancelled)."""
    done = job_transition(
        job_id=job.pk,
        target=JobState.CANCELLED,
        sources=[JobState.QUEUED],
        message="cancelled before it started",
        finished_at=timezone.now(),
    ) or job_transition(
        job_id=job.pk,
        target=JobState.CANCELLING,
        sources=[JobState.RUNNING],
        message=f"cancel requested by {actor.get_username() if actor else 'system'}",
    )
    if done:
        audit_record(
            action="job.cancel", actor=actor, project=job.project, target=job, request=request
        )
    return done


class JobQueueMoveError(Exception):
    """A move the owner's line cannot make (the job is no longer queued, an unknown direction)."""


class JobNotYours(PermissionDenied):
    """Only a job's owner reorders it."""


QUEUE_MOVES = ("front", "up", "down")


def job_queue_move(*, job: Job, actor, to: str, as_admin: bool = False) -> bool:
    """Move a queued job in its owner's line: to the front, one place up or one place down.

    The line is the owner's queued jobs of the job's project and queue (every kind on that queue,
    not only images: the gpu queue's fine-tunes and generations share one worker, so one order
    for all is what "run this next" means). Only the owner moves, only among their own jobs:
    a turn is one of their own messages (job_claim_turn), so another user's job is never passed.
    A project admin (``as_admin``: the caller checked the role) may move anyone's job, still only
    within its owner's line, as admins may cancel anyone's job.
    Returns False when there was nothing to move (already first or last).
    """
    if actor is None or job.created_by_id is None:
        raise JobNotYours(gettext("Only the person who submitted a job can move it in the queue."))
    if job.created_by_id != actor.pk and not as_admin:
        raise JobNotYours(gettext("Only the person who submitted a job can move it in the queue."))
    if to not in QUEUE_MOVES:
        raise JobQueueMoveError(f"Unknown move {to!r}; use one of {', '.join(QUEUE_MOVES)}")
    with transaction.atomic():
        # Moves of one project take turns with each other and with dispatchers and claims.
        Project.objects.select_for_update().filter(pk=job.project_id).values_list("pk").first()
        state = Job.objects.filter(pk=job.pk).values_list("state", flat=True).first()
        if state != JobState.QUEUED:
            raise JobQueueMoveError(
                f"Job {job.pk} is {state or 'gone'}: only queued jobs can be moved"
            )
        line = _owner_line(
            project_id=job.project_id, created_by_id=job.created_by_id, queue=job.queue
        )
        keys = [
            (pk, rank if rank is not None else pk)
            for pk, rank in line.values_list("pk", "queue_rank")
        ]
        at = next(i for i, (pk, _) in enumerate(keys) if pk == job.pk)
        other = {"front": 0, "up": at - 1, "down": at + 1}[to]
        if other < 0 or other >= len(keys) or other == at:
            return False
        # Every job of the line gets its place written down: job_claim_turn applies the line's
        # order only where a rank is set, so the jobs the moved one passes must carry theirs.
        line.filter(queue_rank__isnull=True).order_by().update(queue_rank=F("id"))
        if to == "front":
            Job.objects.filter(pk=job.pk).update(queue_rank=keys[0][1] - 1)
        else:
            (pk_a, key_a), (pk_b, key_b) = keys[at], keys[other]
            Job.objects.filter(pk=pk_a).update(queue_rank=key_b)
            Job.objects.filter(pk=pk_b).update(queue_rank=key_a)
    return True


def job_retry(*, job: Job, actor, request=None) -> Job:
    """Start a new job with the same kind and params as a failed or cancelled one."""
    job.refresh_from_db(fields=["state"])
    if job.state not in (JobState.FAILED, JobState.CANCELLED):
        raise IllegalTransition(job.state, "retry")
    return job_create(
        project=job.project,
        kind=job.kind,
        params=job.params,
        created_by=actor,
        request=request,
        retry_of=job,
    )


def default_worker_id() -> str:
    return f"{socket.gethostname()}"
