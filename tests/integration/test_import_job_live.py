"""A dataset import on a real Celery worker: its progress reaches a websocket client live and the
job ends with the version (Redis, a worker subprocess and uvicorn, as in production)."""

from __future__ import annotations

import asyncio
import signal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.datasets import storage
from apps.datasets.models import DatasetVersion
from apps.jobs.models import Job
from apps.jobs.states import JobState
from tests.integration.helpers import collect_events, job_state, session_cookie, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROWS = 400_000  # enough rows that reading them spans several progress flushes on any machine


def _csv(rows: int) -> bytes:
    return (
        "question,answer\n"
        + "".join(
            f"What is reading {i} of the blood pressure?,About {i % 200} over 80.\n"
            for i in range(rows)
        )
    ).encode()


def _submit(client, project, name: str, rows: int) -> Job:
    response = client.post(
        reverse("api:datasets", args=[project.pk]),
        {
            "name": name,
            "license": "CC0-1.0",
            "source": "tests",
            "file": SimpleUploadedFile(f"{name.lower()}.csv", _csv(rows)),
        },
    )
    assert response.status_code == 202, response.content
    return Job.objects.get(pk=response.json()["id"])


def test_an_import_on_a_real_worker_streams_its_progress_and_ends_with_the_version(
    processes, project, member, client
):
    base = processes.web()
    processes.worker()
    client.force_login(member)
    job_id = _submit(client, project, "Pressure", ROWS).pk

    events, _ = asyncio.run(collect_events(base, job_id, session_cookie(member), timeout=120))

    states = [e["data"]["state"] for e in events if e["kind"] == "state"]
    assert states == ["queued", "running", "succeeded"]
    fractions = [e["data"]["fraction"] for e in events if e["kind"] == "progress"]
    assert any(0 < f < 1 for f in fractions), fractions  # seen while the rows were read
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    job = Job.objects.get(pk=job_id)
    version = DatasetVersion.objects.get(pk=job.result["version_id"])
    assert version.rows == ROWS and version.dataset.name == "Pressure"
    # The staged file went with the success.
    assert not (storage.uploads_root() / job.params["upload"]).exists()


def test_an_import_whose_worker_is_killed_is_run_again_from_the_staged_file(
    processes, project, member, client
):
    processes.scheduler(interval=0.3)  # the reaper
    processes.worker("worker-a")
    client.force_login(member)
    job = _submit(client, project, "Readings", ROWS)
    wait_for(lambda: job_state(job) == JobState.RUNNING and job.progress > 0, what="rows read")

    processes.kill("worker-a", signal.SIGKILL)  # mid-import
    assert (storage.uploads_root() / job.params["upload"]).exists()
    processes.worker("worker-b")
    wait_for(lambda: job_state(job) == JobState.SUCCEEDED, timeout=120, what="the import again")

    assert job.attempt == 2
    version = DatasetVersion.objects.get()  # one version, whole
    assert version.rows == ROWS and job.result["version_id"] == version.pk
    assert not (storage.uploads_root() / job.params["upload"]).exists()
