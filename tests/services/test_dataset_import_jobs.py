"""Dataset imports as cpu jobs (dataset.import), through the pages and the API as users meet them:
upload, map, the import's page while the job runs, then the version or the refused file's errors
at their places; cancel; a lost worker; step 1 refusing a file that cannot be read at all."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from apps.datasets import storage
from apps.datasets.models import Dataset, DatasetVersion
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.jobs.states import JobState
from workers.tasks.runtime import execute_job

QA_CSV = "问题,答案\n高血压患者应该注意什么?,低盐饮食。\nHow often?,Twice a day.\n".encode()
BAD_CSV = "问题,答案\nq1,a1\nq2,\n,a3\n".encode()
FIELDS = {"name": "Clinic QA", "license": "CC-BY-4.0", "source": "Hospital export 2026-10"}
MAPPING = {
    "schema": "qa",
    "role_question": "问题",
    "role_answer": "答案",
    "template": "",
    "validation_fraction": "0.0",
    "seed": "7",
}


def media_listing() -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def staged_uploads() -> list[str]:
    root = storage.uploads_root()
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def upload(client, project, filename: str, body: bytes, **fields):
    data = {**FIELDS, **fields, "file": SimpleUploadedFile(filename, body)}
    return client.post(reverse("datasets:upload", args=[project.pk]), data)


def upload_and_map(client, project, filename: str = "qa.csv", body: bytes = QA_CSV, **mapping):
    """Step 1 and step 2 as the browser sends them; the import job that step 2 queued."""
    response = upload(client, project, filename, body)
    assert response.status_code == 302, response.content[:800]
    map_url = response.url
    response = client.post(map_url, {**MAPPING, **mapping})
    assert response.status_code == 302, response.content[:800]
    job = Job.objects.get(kind="dataset.import")
    assert response.url == reverse("datasets:import", args=[project.pk, job.pk])
    return job, map_url


def run(job: Job) -> Job:
    execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    return job


@pytest.fixture(autouse=True)
def _own_folders(settings, tmp_path):
    """Media and staged uploads of this test only, so what a test left behind is what it made."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"


@pytest.fixture
def logged_in(client, member):
    client.force_login(member)
    return client


# --------------------------------------------------------------------------- the page flow


@pytest.mark.django_db(transaction=True)
def test_a_mapped_upload_is_imported_by_a_job_and_its_page_ends_on_the_new_version(
    logged_in, project
):
    job, _ = upload_and_map(logged_in, project)
    import_url = reverse("datasets:import", args=[project.pk, job.pk])

    waiting = logged_in.get(import_url)
    page = waiting.content.decode()
    assert waiting.status_code == 200
    assert "Importing qa.csv" in page and 'role="progressbar"' in page
    assert reverse("datasets:import_cancel", args=[project.pk, job.pk]) in page
    assert DatasetVersion.objects.count() == 0  # nothing is imported inside the request

    assert run(job).state == JobState.SUCCEEDED, job.error
    version = DatasetVersion.objects.get()
    assert job.result["version_id"] == version.pk and job.result["created"] is True
    assert version.rows == 2 and version.dataset.name == "Clinic QA"
    assert job.events.filter(kind="progress").exists()
    assert staged_uploads() == []  # the staged file went with the success

    done = logged_in.get(import_url, follow=True)
    assert done.redirect_chain[0][0] == version.get_absolute_url()
    assert "高血压患者应该注意什么?" in done.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_refused_file_fails_the_job_and_the_page_shows_each_error_at_its_place(
    logged_in, project
):
    job, map_url = upload_and_map(logged_in, project, "bad.csv", BAD_CSV)

    assert run(job).state == JobState.FAILED
    places = [(e["row"], e["column"]) for e in job.result["errors"]]
    assert places == [(2, "答案"), (3, "问题")] and job.result["total"] == 2
    assert "2 problem(s) in the file" in job.error
    assert DatasetVersion.objects.count() == 0 and Dataset.objects.count() == 0
    assert media_listing() == []
    assert len(staged_uploads()) == 1  # kept: the user may change the mapping and try again

    response = logged_in.get(reverse("datasets:import", args=[project.pk, job.pk]), follow=True)
    assert response.redirect_chain[-1][0] == f"{map_url}?job={job.pk}"
    page = response.content.decode()
    assert "2 problems — nothing was imported" in page
    assert "row 2" in page and "row 3" in page and "<code>答案</code>" in page
    assert 'id="map-form"' in page  # the mapping form, to try again
    assert '<option value="答案" selected>' in page  # with the mapping that was tried


@pytest.mark.django_db(transaction=True)
def test_a_queued_import_cancelled_from_its_page_never_runs_and_leaves_nothing(logged_in, project):
    job, _ = upload_and_map(logged_in, project)

    response = logged_in.post(
        reverse("datasets:import_cancel", args=[project.pk, job.pk]), follow=True
    )

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert "Cancelled: nothing was imported." in response.content.decode()
    assert staged_uploads() == [] and media_listing() == []
    assert execute_job(job.pk, worker_id="test") == "not-claimed"
    assert DatasetVersion.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_an_import_cancelled_while_it_reads_stops_between_chunks_and_leaves_nothing(
    logged_in, project
):
    from apps.datasets.runners import run_import
    from apps.jobs.registry import JobContext
    from apps.jobs.registry import get as kind_named
    from workers.ml.reporting import JobCancelled, RecordingReporter

    rows = "".join(f"question {i}?,answer {i}.\n" for i in range(20_000))
    job, _ = upload_and_map(
        logged_in,
        project,
        "big.csv",
        ("q,a\n" + rows).encode(),
        role_question="q",
        role_answer="a",
    )
    # The user asks to stop as soon as the first chunk of rows is read.
    reporter = RecordingReporter(stop_after_steps=1)
    ctx = JobContext(
        job_id=job.pk,
        project_id=project.pk,
        attempt=1,
        params=kind_named("dataset.import").params.model_validate(job.params),
        reporter=reporter,
        workdir=Path(settings.JOBS_DIR) / str(job.pk),
        checkpoints=None,
    )

    with pytest.raises(JobCancelled):
        run_import(ctx)

    assert len(reporter.steps) == 1 and 0 < reporter.steps[0][0] < 500  # stopped mid-read
    assert DatasetVersion.objects.count() == 0 and Dataset.objects.count() == 0
    assert media_listing() == [] and staged_uploads() == []
    staging = storage.staging_root()
    assert not staging.exists() or not any(staging.iterdir())


@pytest.mark.django_db(transaction=True)
def test_an_import_whose_worker_died_runs_again_from_the_staged_file(logged_in, project):
    job, _ = upload_and_map(logged_in, project)
    claimed = job_services.job_claim(job_id=job.pk, worker_id="killed-worker")
    assert claimed is not None
    # The worker was killed: its lease runs out and the reaper queues the job again.
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert job_services.reap_expired_leases() == 1
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and len(staged_uploads()) == 1

    assert run(job).state == JobState.SUCCEEDED, job.error
    assert job.attempt == 2 and DatasetVersion.objects.get().rows == 2


@pytest.mark.django_db(transaction=True)
def test_importing_the_same_content_again_ends_on_the_existing_version(logged_in, project):
    first, _ = upload_and_map(logged_in, project)
    run(first)
    version = DatasetVersion.objects.get()

    response = logged_in.post(
        reverse("datasets:upload", args=[project.pk]) + f"?dataset={version.dataset_id}",
        {"dataset": version.dataset_id, "file": SimpleUploadedFile("again.csv", QA_CSV)},
    )
    assert response.status_code == 302, response.content[:800]
    assert logged_in.post(response.url, MAPPING).status_code == 302
    again = Job.objects.filter(kind="dataset.import").exclude(pk=first.pk).get()

    assert run(again).state == JobState.SUCCEEDED
    assert again.result["created"] is False and again.result["version_id"] == version.pk
    assert DatasetVersion.objects.count() == 1
    page = logged_in.get(reverse("datasets:import", args=[project.pk, again.pk]))
    assert page.status_code == 302 and page.url == version.get_absolute_url()


def test_a_second_submit_of_the_mapping_follows_the_import_under_way(logged_in, project):
    job, map_url = upload_and_map(logged_in, project)

    response = logged_in.post(map_url, MAPPING)

    assert response.status_code == 302
    assert response.url == reverse("datasets:import", args=[project.pk, job.pk])
    assert Job.objects.filter(kind="dataset.import").count() == 1


def test_strangers_get_404_from_the_import_page_its_cancel_and_the_job(client, project, people):
    client.force_login(people["member"])
    job, _ = upload_and_map(client, project)
    client.force_login(people["outsider"])

    assert client.get(reverse("datasets:import", args=[project.pk, job.pk])).status_code == 404
    cancel = reverse("datasets:import_cancel", args=[project.pk, job.pk])
    assert client.post(cancel).status_code == 404
    assert client.get(reverse("api:job", args=[project.pk, job.pk])).status_code == 404
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


# --------------------------------------------------------------------------- the API


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_202_with_the_job_which_ends_with_the_version(logged_in, project):
    body = "\n".join(
        json.dumps({"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"})
        for i in range(5)
    ).encode()

    response = logged_in.post(
        reverse("api:datasets", args=[project.pk]),
        {**FIELDS, "name": "Prefs", "file": SimpleUploadedFile("prefs.jsonl", body)},
    )

    assert response.status_code == 202, response.content
    answer = response.json()
    job = Job.objects.get(pk=answer["id"])
    assert answer["kind"] == "dataset.import" and answer["state"] == "queued"
    assert answer["url"] == job.get_absolute_url()
    assert response["Location"] == reverse("api:job", args=[project.pk, job.pk])
    assert DatasetVersion.objects.count() == 0

    run(job)
    result = logged_in.get(response["Location"]).json()
    assert result["state"] == "succeeded"
    version = DatasetVersion.objects.get(pk=result["result"]["version_id"])
    assert result["result"]["rows"] == 5 == version.rows and version.dataset.schema == "preference"


@pytest.mark.django_db(transaction=True)
def test_the_api_job_of_a_refused_file_fails_with_every_error_and_stores_nothing(
    logged_in, project
):
    response = logged_in.post(
        reverse("api:datasets", args=[project.pk]),
        {**FIELDS, "file": SimpleUploadedFile("bad.csv", b"question,answer\nq1,a1\nq2,\n,a3\n")},
    )
    assert response.status_code == 202, response.content

    run(Job.objects.get(pk=response.json()["id"]))
    job = logged_in.get(response["Location"]).json()

    assert job["state"] == "failed" and "nothing was imported" in job["error"]
    assert [(e["row"], e["column"]) for e in job["result"]["errors"]] == [
        (2, "answer"),
        (3, "question"),
    ]
    assert job["result"]["total"] == 2
    assert DatasetVersion.objects.count() == 0 and media_listing() == []


def test_the_api_refuses_bad_fields_at_once_without_a_job(logged_in, project):
    response = logged_in.post(
        reverse("api:datasets", args=[project.pk]),
        {"name": "No license", "source": "", "file": SimpleUploadedFile("qa.csv", QA_CSV)},
    )

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"license", "source"}
    assert not Job.objects.exists() and staged_uploads() == []


# --------------------------------------------------------------------------- step 1


@pytest.mark.parametrize(
    ("filename", "body", "said"),
    [
        ("broken.json", b'[{"question": "a", "answer": "b"}, {"question": ', "line 1"),
        ("object.json", b'{\n  "data": [\n    {"question": "a", "answer": "b"}\n  ]\n}\n', "array"),
        ("photos.zip", b"this is not a zip archive at all", "zip"),
        ("odd.jsonl", b'{"question": "\\ud800 lone", "answer": "x"}\n', "surrogate"),
    ],
    ids=["malformed-json", "top-level-object", "fake-zip", "lone-surrogate"],
)
def test_step_1_refuses_a_file_that_cannot_be_read_and_says_why(
    logged_in, project, filename, body, said
):
    response = upload(logged_in, project, filename, body)

    assert response.status_code == 400, "the file reached the mapping step"
    page = response.content.decode()
    assert 'class="field has-error"' in page and said in page
    assert staged_uploads() == [] and not Job.objects.exists()


def test_the_mapping_page_shows_a_sample_that_utf8_cannot_encode(logged_in, project, member):
    staged = storage.stage_upload(
        uploaded_file=SimpleUploadedFile(
            "odd.jsonl",
            b'{"question": "\\ud800 lone", "answer": "x"}\n{"question": "ok", "answer": "y"}\n',
        ),
        user_id=member.pk,
        project_id=project.pk,
    )
    (staged.path / "form.json").write_text(json.dumps({**FIELDS, "dataset": None}))

    response = logged_in.get(reverse("datasets:map", args=[project.pk, staged.token]))

    assert response.status_code == 200
    page = response.content.decode()
    # Shown as its escape (or, once sniff refuses it, as the reason the file cannot be read).
    assert "\\ud800 lone" in page or "could not be read" in page


def test_a_cell_utf8_cannot_encode_is_shown_as_its_escape():
    from apps.datasets.selectors import printable

    assert printable("\ud800 lone") == "\\ud800 lone"
    assert printable({"a": "\udfff"}) == '{"a": "\\udfff"}'
    assert printable("x" * 500).endswith("…") and len(printable("x" * 500)) == 160


@pytest.mark.django_db(transaction=True)
def test_a_big5_file_is_refused_at_step_1_until_its_encoding_is_chosen_then_imports(
    logged_in, project
):
    body = "問題,答案\n頭痛怎麼辦,多休息，注意飲食清淡。\n發燒三天了怎麼辦,及時就醫\n".encode(
        "big5"
    )
    refused = upload(logged_in, project, "qa.csv", body)
    assert refused.status_code == 400
    assert "looks like another encoding" in refused.content.decode()
    assert staged_uploads() == []

    chosen = upload(logged_in, project, "qa.csv", body, encoding="big5")
    assert chosen.status_code == 302, chosen.content[:800]
    mapping_page = logged_in.get(chosen.url).content.decode()
    assert "big5" in mapping_page and "頭痛怎麼辦" in mapping_page
    response = logged_in.post(
        chosen.url, {**MAPPING, "role_question": "問題", "role_answer": "答案"}
    )
    assert response.status_code == 302, response.content[:800]
    job = run(Job.objects.get(kind="dataset.import"))
    assert job.state == JobState.SUCCEEDED, job.error
    version = DatasetVersion.objects.get()
    assert version.source_encoding == "big5" and version.rows == 2
    page = logged_in.get(version.get_absolute_url()).content.decode()
    assert "發燒三天了怎麼辦" in page and "及時就醫" in page
