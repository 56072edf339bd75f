"""Streamed playground text through the JobReporter (issue 14, "No tax"): the first words are
written at once, buffered words never wait for the next token or the end of the job, nothing is
lost and the text events keep their order. bench/text.py measures the same path end to end."""

from __future__ import annotations

import threading
import time

import pytest

from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.services import job_claim
from tests import factories
from workers.tasks.reporter import JobReporter

pytestmark = pytest.mark.django_db(transaction=True)  # the writer thread has its own connection


@pytest.fixture
def running(project, member):
    """A claimed (running) job and a reporter for its attempt, closed after the test."""
    job = factories.make_job(project, member)
    claimed = job_claim(job_id=job.pk, worker_id="worker-a")
    reporters: list[JobReporter] = []

    def reporter(min_interval: float) -> JobReporter:
        r = JobReporter(job_id=claimed.pk, attempt=claimed.attempt, min_interval=min_interval)
        reporters.append(r)
        return r

    yield claimed, reporter
    for r in reporters:
        r.close()


def _texts(job: Job) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job, kind=EventKind.TEXT).order_by("seq"))


def _wait_for(predicate, timeout: float = 3.0) -> float:
    """Seconds until predicate() held (fails the test after `timeout`)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - started


def test_the_first_streamed_text_is_written_without_waiting_for_the_throttle(running):
    job, reporter = running
    r = reporter(min_interval=30.0)  # the throttle holds for 30 s from the start
    r.log("loading the model")  # buffered
    time.sleep(0.1)
    assert not JobEvent.objects.filter(job=job, kind=EventKind.LOG).exists()

    r.text("Once", index=0)

    waited = _wait_for(lambda: _texts(job))
    assert waited < 2.0
    assert [e.data for e in _texts(job)] == [{"index": 0, "delta": "Once"}]
    assert JobEvent.objects.filter(job=job, kind=EventKind.LOG).exists()  # what came before it


def test_each_streams_first_text_is_written_at_once_after_what_was_buffered_before_it(running):
    job, reporter = running
    r = reporter(min_interval=30.0)
    r.text("Base ", index=0)
    _wait_for(lambda: len(_texts(job)) == 1)
    r.text("answer.", index=0)  # throttled: buffered

    r.text("Adapter ", index=1)  # the second answer's first words

    _wait_for(lambda: len(_texts(job)) == 3)
    assert [e.data for e in _texts(job)] == [
        {"index": 0, "delta": "Base "},
        {"index": 0, "delta": "answer."},
        {"index": 1, "delta": "Adapter "},
    ]


def test_text_that_comes_just_after_a_write_is_written_within_the_interval_without_more_tokens(
    running,
):
    job, reporter = running
    r = reporter(min_interval=0.3)
    r.text("The ", index=0)
    _wait_for(lambda: len(_texts(job)) == 1)

    r.text("end.", index=0)  # throttled, and nothing follows it

    waited = _wait_for(lambda: len(_texts(job)) == 2, timeout=3.0)
    assert waited < 1.5
    assert "".join(e.data["delta"] for e in _texts(job)) == "The end."


def test_no_streamed_text_is_lost_and_text_events_arrive_in_order(running):
    job, reporter = running
    r = reporter(min_interval=0.02)
    sent = {0: [], 1: []}

    def produce(index: int) -> None:
        for i in range(150):
            delta = f"{index}:{i} "
            sent[index].append(delta)
            r.text(delta, index=index)
            r.step(i + 1, 150)
            if i % 10 == 0:
                time.sleep(0.005)

    for index in (0, 1):  # one stream after the other, as compare() runs them
        produce(index)
    r.close()

    events = list(JobEvent.objects.filter(job=job).order_by("seq"))
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
    texts = [e for e in events if e.kind == EventKind.TEXT]
    assert len(texts) > 2  # streamed in several writes, not one at the end
    for index in (0, 1):
        got = "".join(e.data["delta"] for e in texts if e.data["index"] == index)
        assert got == "".join(sent[index])
    indexes = [e.data["index"] for e in texts]
    assert indexes == sorted(indexes)  # stream 1 never before the end of stream 0


def test_concurrent_text_and_writes_lose_nothing(running):
    job, reporter = running
    r = reporter(min_interval=0.0)  # every call wakes the writer: the most interleaving
    deltas = [f"w{i} " for i in range(400)]
    done = threading.Event()

    def flusher() -> None:
        while not done.is_set():
            r.flush()
            time.sleep(0.002)

    t = threading.Thread(target=flusher)
    t.start()
    for d in deltas:
        r.text(d, index=0)
    done.set()
    t.join()
    r.close()

    assert "".join(e.data["delta"] for e in _texts(job)) == "".join(deltas)


# ---------------------------------------------------------------- the playground job


@pytest.fixture
def tiny(tmp_path, settings):
    from apps.models.models import BaseModel
    from apps.models.services import ensure_builtin_rows

    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


def test_a_playground_job_streams_all_its_text_before_its_answer_is_saved(project, member, tiny):
    from apps.jobs import services as job_services
    from apps.outputs.models import Output
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(
        project=project,
        kind="textgen",
        created_by=member,
        params={
            "base_model_id": tiny.pk,
            "adapter_ids": [None, None],
            "prompt": "Hello",
            "max_new_tokens": 24,
            "temperature": 0,
        },
    )
    assert execute_job(job.pk, worker_id="test") == "succeeded"

    outputs = list(Output.objects.filter(job=job).order_by("pk"))
    texts = _texts(job)
    for index, output in enumerate(outputs):
        streamed = "".join(e.data["delta"] for e in texts if e.data["index"] == index)
        assert streamed == output.text and output.text
    assert [e.data["index"] for e in texts] == sorted(e.data["index"] for e in texts)
    # The last words were written before the first Output row, not after the answers were saved.
    assert texts[-1].created_at <= outputs[0].created_at
