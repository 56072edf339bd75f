"""Issue 14 ("no tax"): the cheaper dispatch, claim and doorbell paths keep the engine's promises.

Submit sends a job that has a free slot itself (no dispatcher round), the claim checks the limit in
its conditional UPDATE, and sockets share one channel-layer membership per group and process.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone

from apps.jobs import services
from apps.jobs.consumers import LocalGroups
from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.services import job_append_events, job_claim
from apps.jobs.states import JobState
from tests import factories
from webapp.asgi import application


@pytest.fixture
def make_job(project, people):
    def make(**params) -> Job:
        return factories.make_job(project, people["member"], **params)

    return make


@pytest.fixture
def broker(monkeypatch):
    """The job ids put on Celery queues, in order (the broker itself is not needed here)."""
    sent: list[int] = []
    monkeypatch.setattr(services, "_publish", lambda job_id, queue: sent.append(job_id) or True)
    return sent


def _limit(project, n: int) -> None:
    project.max_concurrent_jobs = n
    project.save()


# --------------------------------------------------------------------------- submit


def test_a_job_with_a_free_slot_is_sent_once_when_its_transaction_commits(
    project, make_job, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job()

    job.refresh_from_db()
    assert broker == [job.pk]
    assert job.dispatched_at is not None and job.dispatch_count == 1
    services._broker_lost_its_messages()  # the broker epoch is known: Redis kept its data
    assert services.dispatch_pending() == 0  # marked sent: no dispatcher sends it again
    assert broker == [job.pk]


def test_a_new_job_does_not_overtake_an_older_one_waiting_for_a_slot(
    project, make_job, broker, django_capture_on_commit_callbacks
):
    _limit(project, 1)
    with django_capture_on_commit_callbacks(execute=True):
        running = make_job()
    job_claim(job_id=running.pk, worker_id="w")
    with django_capture_on_commit_callbacks(execute=True):
        older = make_job()  # no slot: waits unsent
    services.job_finish(job_id=running.pk, attempt=1, target=JobState.SUCCEEDED)  # slot frees;
    # its dispatcher round has not run yet when the next job is submitted
    with django_capture_on_commit_callbacks(execute=True):
        newer = make_job()

    assert broker == [running.pk, older.pk]
    newer.refresh_from_db()
    assert newer.dispatched_at is None


def test_the_first_event_of_a_new_job_is_seq_one_and_rings_after_commit(
    project, make_job, monkeypatch, django_capture_on_commit_callbacks
):
    rung: list[tuple[int, list[int]]] = []
    monkeypatch.setattr(services, "_publish", lambda job_id, queue: True)
    monkeypatch.setattr(
        services.doorbell, "ring_job", lambda job_id, msgs: rung.append((job_id, msgs))
    )
    monkeypatch.setattr(services.doorbell, "ring_project", lambda *a, **k: None)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = make_job()
    assert rung == []  # nothing before the commit
    for callback in callbacks:
        callback()

    assert [(m["seq"], m["kind"], m["data"]["state"]) for m in rung[0][1]] == [
        (1, EventKind.STATE, JobState.QUEUED)
    ]
    written = job_append_events(job_id=job.pk, events=[(EventKind.LOG, {"message": "next"})])
    assert [e.seq for e in written] == [2]


# --------------------------------------------------------------------------- claim


def test_a_claim_beyond_the_projects_limit_is_refused_and_the_job_waits_unsent(project, make_job):
    _limit(project, 2)
    jobs = [make_job() for _ in range(3)]
    Job.objects.update(dispatched_at=timezone.now())  # their messages arrive

    assert job_claim(job_id=jobs[0].pk, worker_id="a") is not None
    assert job_claim(job_id=jobs[1].pk, worker_id="b") is not None
    assert job_claim(job_id=jobs[2].pk, worker_id="c") is None

    jobs[2].refresh_from_db()
    assert jobs[2].state == JobState.QUEUED and jobs[2].attempt == 0
    assert jobs[2].dispatched_at is None and jobs[2].started_at is None
    assert Job.objects.filter(state=JobState.RUNNING).count() == 2


def test_a_duplicate_message_does_nothing(project, make_job):
    job = make_job()
    first = job_claim(job_id=job.pk, worker_id="a")

    assert job_claim(job_id=job.pk, worker_id="b") is None

    job.refresh_from_db()
    assert first is not None and first.attempt == 1
    assert job.attempt == 1 and job.lease_owner == "a"
    assert job.started_at == first.started_at
    states = JobEvent.objects.filter(job=job, kind=EventKind.STATE).order_by("seq")
    assert [e.data["state"] for e in states] == [JobState.QUEUED, JobState.RUNNING]


def test_a_duplicate_message_at_a_full_project_leaves_the_running_job_alone(project, make_job):
    _limit(project, 1)
    job = make_job()
    job_claim(job_id=job.pk, worker_id="a")

    assert job_claim(job_id=job.pk, worker_id="b") is None

    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.lease_owner == "a" and job.attempt == 1


def test_started_at_is_stamped_by_the_claim_itself(project, make_job):
    job = make_job()
    before = timezone.now()

    claimed = job_claim(job_id=job.pk, worker_id="a")

    after = timezone.now()
    assert before <= claimed.started_at <= after
    assert claimed.attempt_started_at == claimed.started_at


def test_a_claim_of_a_missing_job_does_nothing(db):
    assert job_claim(job_id=424242, worker_id="a") is None


@pytest.mark.django_db(transaction=True)
def test_two_workers_cannot_both_take_the_last_slot(project, people):
    _limit(project, 1)
    jobs = [factories.make_job(project, people["member"]) for _ in range(2)]
    Job.objects.update(dispatched_at=timezone.now())
    results: dict[int, Job | None] = {}
    start = threading.Barrier(2)

    def claim(job_id: int) -> None:
        try:
            start.wait()
            results[job_id] = job_claim(job_id=job_id, worker_id=f"w{job_id}")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=claim, args=(j.pk,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sum(r is not None for r in results.values()) == 1
    assert Job.objects.filter(state=JobState.RUNNING).count() == 1
    waiting = Job.objects.get(state=JobState.QUEUED)
    assert waiting.dispatched_at is None and waiting.attempt == 0


# --------------------------------------------------------------------------- websockets


def _headers(client, user) -> list[tuple[bytes, bytes]]:
    client.force_login(user)
    return [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]


async def _open(path: str, headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def _events(communicator, n: int) -> list[int]:
    seqs = []
    while len(seqs) < n:
        frame = await communicator.receive_json_from(timeout=5)
        # A frame is one message or an array of a doorbell's events (apps/jobs/consumers.py).
        for msg in frame if isinstance(frame, list) else [frame]:
            if msg["type"] == "event":
                seqs.append(msg["seq"])
    return seqs


def _log(job_id: int, message: str) -> None:
    job_append_events(job_id=job_id, events=[(EventKind.LOG, {"message": message})])


@pytest.mark.django_db(transaction=True)
def test_sockets_on_one_job_share_one_group_membership_and_each_get_every_event_in_order(
    client, project, people
):
    job = factories.make_job(project, people["member"])
    headers = _headers(client, people["member"])

    async def scenario():
        a = await _open(f"/ws/jobs/{job.pk}/?after=0", headers)
        b = await _open(f"/ws/jobs/{job.pk}/?after=0", headers)
        for c in (a, b):
            assert (await c.receive_json_from(timeout=5))["type"] == "snapshot"
            assert await _events(c, 1) == [1]  # the replayed `queued` event
        hub = LocalGroups.get()
        assert len(hub.members[f"job.{job.pk}"]) == 2
        assert len(hub.channels) == 2  # job.<id> and user.<id>: one channel each, not per socket
        for i in range(5):
            await asyncio.to_thread(_log, job.pk, f"line {i}")
        got = [await _events(c, 5) for c in (a, b)]
        await a.disconnect()
        await b.disconnect()
        assert f"job.{job.pk}" not in hub.channels  # the last socket out leaves the group
        return got

    assert async_to_sync(scenario)() == [[2, 3, 4, 5, 6], [2, 3, 4, 5, 6]]


@pytest.mark.django_db(transaction=True)
def test_dashboards_on_one_project_get_a_job_change_encoded_once_for_all(
    client, project, people, monkeypatch
):
    # A job.changed doorbell's snapshot is one object for every dashboard socket of the process:
    # it is turned into JSON once, not once per socket (1,000 dashboards, 1,000 encodings).
    from apps.jobs import consumers

    headers = _headers(client, people["member"])
    job = factories.make_job(project, people["member"])
    pushes: list[float] = []
    dumps = consumers.json.dumps

    def counting(obj, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("type") == "job" and obj["job"]["id"] == job.pk:
            pushes.append(obj["job"]["progress"])
        return dumps(obj, *args, **kwargs)

    async def scenario():
        sockets = [await _open(f"/ws/projects/{project.pk}/", headers) for _ in range(3)]
        for ws in sockets:  # the recent jobs on connect
            assert (await ws.receive_json_from(timeout=5))["job"]["id"] == job.pk
        monkeypatch.setattr(consumers.json, "dumps", counting)
        await asyncio.to_thread(
            job_append_events,
            job_id=job.pk,
            events=[(EventKind.STATE, {"state": "queued", "attempt": 0, "error": ""})],
            progress=0.5,
        )
        frames = [await ws.receive_json_from(timeout=5) for ws in sockets]
        for ws in sockets:
            await ws.disconnect()
        return frames

    frames = async_to_sync(scenario)()

    assert [f["job"]["progress"] for f in frames] == [0.5, 0.5, 0.5]
    assert pushes == [0.5]


@pytest.mark.django_db(transaction=True)
def test_after_the_last_socket_leaves_the_process_still_listens_for_doorbells(
    client, project, people
):
    """The pub/sub layer's reader naps 0.1 s at a time while its connection subscribes to
    nothing; the next socket's first doorbell would wait out the nap. The hub keeps one channel
    subscribed for the process's life, so the reader never naps (this checks that state: a test
    must not time the 0.1 s itself)."""
    from channels.layers import get_channel_layer

    job = factories.make_job(project, people["member"])
    headers = _headers(client, people["member"])

    async def scenario():
        c = await _open(f"/ws/jobs/{job.pk}/?after=0", headers)
        assert (await c.receive_json_from(timeout=5))["type"] == "snapshot"
        await c.disconnect()
        hub = LocalGroups.get()
        assert not hub.channels  # every group left
        # The reader drops a subscription when Redis confirms the UNSUBSCRIBE: let it read.
        await asyncio.sleep(0.5)
        shards = get_channel_layer()._get_layer()._shards
        return [shard._pubsub.subscribed for shard in shards]

    assert async_to_sync(scenario)() == [True]


@pytest.mark.django_db(transaction=True)
def test_a_reconnect_gets_the_missed_events_exactly_once_then_live_ones(client, project, people):
    job = factories.make_job(project, people["member"])
    headers = _headers(client, people["member"])

    async def scenario():
        first = await _open(f"/ws/jobs/{job.pk}/?after=0", headers)
        assert (await first.receive_json_from(timeout=5))["type"] == "snapshot"
        assert await _events(first, 1) == [1]
        await first.disconnect()
        for i in range(3):  # while away
            await asyncio.to_thread(_log, job.pk, f"missed {i}")

        again = await _open(f"/ws/jobs/{job.pk}/?after=1", headers)
        assert (await again.receive_json_from(timeout=5))["type"] == "snapshot"
        replayed = await _events(again, 3)
        await asyncio.to_thread(_log, job.pk, "live")
        live = await _events(again, 1)
        assert await again.receive_nothing(timeout=0.3)  # no duplicate of anything
        await again.disconnect()
        return replayed, live

    assert async_to_sync(scenario)() == ([2, 3, 4], [5])


@pytest.mark.django_db(transaction=True)
def test_a_lost_doorbell_is_filled_from_the_database_in_order(client, project, people):
    job = factories.make_job(project, people["member"])
    headers = _headers(client, people["member"])

    async def scenario():
        c = await _open(f"/ws/jobs/{job.pk}/?after=0", headers)
        assert (await c.receive_json_from(timeout=5))["type"] == "snapshot"
        assert await _events(c, 1) == [1]
        hub = LocalGroups.get()
        members = hub.members.pop(f"job.{job.pk}")  # doorbells of the next event go nowhere
        await asyncio.to_thread(_log, job.pk, "lost")
        await asyncio.sleep(0.2)
        hub.members[f"job.{job.pk}"] = members
        await asyncio.to_thread(_log, job.pk, "rung")  # seq 3 arrives: 2 is fetched first
        got = await _events(c, 2)
        await c.disconnect()
        return got

    assert async_to_sync(scenario)() == [2, 3]


@pytest.mark.django_db(transaction=True)
def test_one_resync_round_serves_every_quiet_socket_with_the_same_few_statements(
    client, project, people, settings
):
    """Quiet sockets used to cost two statements each per round for the access check and one for
    the catch-up (1,000 of them: 70 % of a core, bench/dispatch.py --idle). A round now asks the
    same few statements for 2 sockets as for 6, and still heals every socket a doorbell missed."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from apps.jobs.consumers import ResyncRounds

    settings.ATELIER = {**settings.ATELIER, "WS_RESYNC_SECONDS": 3600.0}  # rounds run by hand
    job = factories.make_job(project, people["member"])
    # A client each: logging another user in on one client would end the first one's session.
    users = [_headers(Client(), people[r]) for r in ("member", "viewer", "reviewer")]

    async def scenario(ctx, n: int):
        sockets = [await _open(f"/ws/jobs/{job.pk}/?after=0", users[k % 3]) for k in range(n)]
        for c in sockets:
            assert (await c.receive_json_from(timeout=5))["type"] == "snapshot"
            await _events(c, 1)
        rounds = ResyncRounds.get()
        for s in rounds.sockets:
            s._last_delivery -= 7200  # idle for a while
        LocalGroups.get().members.pop(f"job.{job.pk}")  # the next doorbell reaches nobody
        await asyncio.to_thread(_log, job.pk, "lost")
        await rounds.round()
        healed = [await _events(c, 1) for c in sockets]
        for s in rounds.sockets:
            s._last_delivery -= 7200
        before = len(ctx.captured_queries)
        await rounds.round()  # nothing new: nobody reads events
        quiet = len(ctx.captured_queries) - before
        nothing = [await c.receive_nothing(timeout=0.2) for c in sockets]
        for c in sockets:
            await c.disconnect()
        return healed, quiet, nothing

    results = {}
    for n in (2, 6):
        # This thread's connection itself (not the proxy, which the event loop's thread would
        # resolve to its own): database_sync_to_async runs the consumers' queries here.
        with CaptureQueriesContext(connections["default"]) as ctx:
            results[n] = async_to_sync(scenario)(ctx, n)
        _log(job.pk, "next")  # seq 3: replayed to the next sockets when they connect

    healed2, quiet2, nothing2 = results[2]
    healed6, quiet6, nothing6 = results[6]
    assert healed2 == [[2], [2]]
    assert healed6 == [[4]] * 6  # after seq 3 ("next"), the replay; then the lost one
    assert all(nothing2) and all(nothing6)
    # Users, memberships, the jobs' last sequence numbers, and the viewer's withheld content
    # asked again (membership, job): once per user and job, not per socket.
    assert quiet2 == quiet6 == 5


def test_a_full_inbox_drops_its_oldest_doorbell():
    from apps.jobs import consumers

    class Socket(consumers.Resync):
        pass

    async def scenario():
        s = Socket()
        s._inbox = asyncio.Queue(maxsize=2)
        for i in range(3):
            s.ring({"type": "job.events", "n": i})
        return [s._inbox.get_nowait()["n"] for _ in range(2)]

    assert asyncio.run(scenario()) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_round_still_heals_sockets_from_the_database_while_redis_refuses_the_joins(
    client, project, people, settings, monkeypatch
):
    from apps.jobs.consumers import ResyncRounds

    settings.ATELIER = {**settings.ATELIER, "WS_RESYNC_SECONDS": 3600.0}  # rounds run by hand
    job = factories.make_job(project, people["member"])
    headers = _headers(Client(), people["member"])

    async def refused(self, group, member):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def scenario():
        c = await _open(f"/ws/jobs/{job.pk}/?after=0", headers)
        assert (await c.receive_json_from(timeout=5))["type"] == "snapshot"
        assert await _events(c, 1) == [1]
        LocalGroups.get().members.pop(f"job.{job.pk}")  # Redis away: no doorbell reaches it
        await asyncio.to_thread(_log, job.pk, "while Redis is away")
        monkeypatch.setattr(LocalGroups, "join", refused)
        rounds = ResyncRounds.get()
        for s in rounds.sockets:
            s._last_delivery -= 7200
        await rounds.round()
        got = await _events(c, 1)
        await c.disconnect()
        return got

    assert async_to_sync(scenario)() == [2]
