"""Datasets through the services and pages: import, versions, lineage, approval, downloads, PII jobs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.datasets import services
from apps.datasets.models import Approval, Dataset, DatasetVersion
from apps.datasets.storage import media_path
from apps.jobs import services as job_services
from apps.jobs.models import Job

QA_ROWS = [
    ("高血压患者应该注意什么?", "低盐饮食, 规律服药。"),
    ("How often should I check my blood pressure?", "Twice a day, at the same times."),
    ("张先生的电话是多少?", "请拨打 13812345678 联系张先生, 身份证 11010519491231002X。"),
    ("Can I email the clinic?", "Yes: clinic.help@example.org, or call 010-62345678."),
]


def write_csv(path: Path, rows, encoding="utf-8", header=("问题", "答案")) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def media_listing() -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def counts() -> tuple[int, int, int]:
    return Dataset.objects.count(), DatasetVersion.objects.count(), AuditEvent.objects.count()


def do_import(project, user, path: Path, **kw):
    kw.setdefault("name", "Clinic QA")
    kw.setdefault("license", "CC-BY-4.0")
    kw.setdefault("source", "Hospital export 2026-10")
    return services.dataset_import(
        project=project, actor=user, upload_path=path, filename=path.name, **kw
    )


@pytest.fixture
def qa_csv(tmp_path):
    return write_csv(tmp_path / "medical_qa.csv", QA_ROWS, encoding="gbk")


def test_importing_a_gbk_csv_creates_a_dataset_with_one_version_and_its_file_in_media(
    db, project, member, qa_csv
):
    version, created = do_import(project, member, qa_csv)

    assert created and version.number == 1 and version.rows == 4
    assert version.dataset.schema == "qa" and version.source_encoding.lower().startswith("gb")
    stored = media_path(version.storage_path)
    first = json.loads(stored.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"question": QA_ROWS[0][0], "answer": QA_ROWS[0][1]}
    assert version.approval == Approval.PENDING  # projects require approval by default
    assert AuditEvent.objects.filter(
        action="dataset.version.import", target_id=str(version.pk)
    ).exists()


def test_reuploading_the_same_content_finds_the_existing_version(
    db, project, member, qa_csv, tmp_path
):
    version, _ = do_import(project, member, qa_csv)
    same_as_utf8 = write_csv(tmp_path / "again.csv", QA_ROWS, encoding="utf-8-sig")

    again, created = do_import(project, member, same_as_utf8, name="", dataset=version.dataset)

    assert created is False and again.pk == version.pk
    assert DatasetVersion.objects.count() == 1


def test_a_file_with_errors_changes_neither_the_database_nor_the_media_folder(
    db, project, member, tmp_path
):
    bad = write_csv(tmp_path / "bad.csv", [("q1", "a1"), ("q2", ""), ("", "a3")])
    before_counts, before_media = counts(), media_listing()

    with pytest.raises(services.DatasetImportFailed) as info:
        do_import(project, member, bad)

    messages = [e["message"] for e in info.value.errors]
    assert info.value.total == 2
    assert any("row 2" in m and '"答案"' in m for m in messages), messages
    assert any("row 3" in m and '"问题"' in m for m in messages), messages
    assert counts() == before_counts and media_listing() == before_media


def test_license_and_source_are_required(db, project, member, qa_csv):
    with pytest.raises(ValidationError) as info:
        do_import(project, member, qa_csv, license="", source=" ")
    assert set(info.value.message_dict) == {"license", "source"}
    assert Dataset.objects.count() == 0


def test_a_fine_tune_on_an_unapproved_version_is_refused_with_a_clear_message(
    db, project, member, qa_csv
):
    version, _ = do_import(project, member, qa_csv)

    with pytest.raises(services.DatasetNotApproved, match="has not been approved yet"):
        services.ensure_trainable(version)


def test_a_reviewer_approves_after_a_pii_scan_and_then_training_may_use_it(
    db, project, people, qa_csv
):
    version, _ = do_import(project, people["member"], qa_csv)
    with pytest.raises(ValidationError, match="PII scan first"):
        services.version_decide(
            version=version, actor=people["reviewer"], role="reviewer", approve=True, comment="ok"
        )
    services.version_set_pii_report(version=version, report={"counts": {}})
    version.refresh_from_db()

    services.version_decide(
        version=version,
        actor=people["reviewer"],
        role="reviewer",
        approve=True,
        comment="checked the report",
    )

    version.refresh_from_db()
    assert version.approval == Approval.APPROVED and version.decided_by == people["reviewer"]
    services.ensure_trainable(version)  # no exception
    assert AuditEvent.objects.filter(action="dataset.version.approve").count() == 1


def test_the_importer_cannot_approve_their_own_version(db, project, people, qa_csv):
    version, _ = do_import(project, people["admin"], qa_csv)
    services.version_set_pii_report(version=version, report={"counts": {}})
    with pytest.raises(ValidationError, match="another reviewer"):
        services.version_decide(
            version=version, actor=people["admin"], role="admin", approve=True, comment="mine"
        )


@pytest.mark.django_db(transaction=True)
def test_nobody_who_imported_or_derived_a_version_in_the_lineage_may_approve_it(
    project, people, qa_csv
):
    from workers.tasks.runtime import execute_job

    # The admin imports v1; a member redacts it into v2 (a job: the version is theirs).
    version, _ = do_import(project, people["admin"], qa_csv)
    job = job_services.job_create(
        project=project,
        kind="dataset.redact",
        params={"version_id": version.pk, "mode": "mask"},
        created_by=people["member"],
    )
    assert execute_job(job.pk, worker_id="test") == "succeeded", Job.objects.get(pk=job.pk).error
    child = version.dataset.versions.get(number=2)
    assert child.created_by == people["member"]

    for who in ("admin", "member"):  # the importer of v1, the deriver of v2
        with pytest.raises(ValidationError, match="lineage"):
            services.version_decide(
                version=child, actor=people[who], role="admin", approve=True, comment="fine"
            )
    child.refresh_from_db()
    assert child.approval != Approval.APPROVED and child.decided_by is None

    services.version_decide(
        version=child, actor=people["reviewer"], role="reviewer", approve=True, comment="clean"
    )
    child.refresh_from_db()
    assert child.approval == Approval.APPROVED


def test_a_derivation_that_found_its_version_stored_still_counts_its_launcher(
    db, project, people, qa_csv
):
    version, _ = do_import(project, people["member"], qa_csv)
    services.version_set_pii_report(version=version, report={"counts": {}})
    # The admin's redaction produced content that was already stored as version 1 itself.
    Job.objects.create(
        project=project,
        created_by=people["admin"],
        kind="dataset.redact",
        queue="cpu",
        state="succeeded",
        result={"version_id": version.pk},
    )
    with pytest.raises(ValidationError, match="lineage"):
        services.version_decide(
            version=version, actor=people["admin"], role="admin", approve=True, comment="ok"
        )


def test_a_rejected_version_names_the_reviewer_and_reason_when_training_is_refused(
    db, project, people, qa_csv
):
    version, _ = do_import(project, people["member"], qa_csv)
    services.version_decide(
        version=version,
        actor=people["reviewer"],
        role="reviewer",
        approve=False,
        comment="contains patient names",
    )
    version.refresh_from_db()
    with pytest.raises(services.DatasetNotApproved, match="contains patient names"):
        services.ensure_trainable(version)


@pytest.mark.django_db(transaction=True)
def test_pii_scan_job_reports_types_and_rows(project, member, qa_csv):
    from workers.tasks.runtime import execute_job

    version, _ = do_import(project, member, qa_csv)
    job = job_services.job_create(
        project=project,
        kind="dataset.pii_scan",
        params={"version_id": version.pk},
        created_by=member,
    )

    assert execute_job(job.pk, worker_id="test") == "succeeded"

    version.refresh_from_db()
    report = version.pii_report
    assert report["counts"]["CN_PHONE"] >= 2 and report["counts"]["CN_RESIDENT_ID"] == 1
    assert report["counts"]["EMAIL"] == 1
    assert Job.objects.get(pk=job.pk).progress == 1.0


@pytest.mark.django_db(transaction=True)
def test_redaction_writes_a_child_version_without_any_original_value(project, member, qa_csv):
    from workers.tasks.runtime import execute_job

    version, _ = do_import(project, member, qa_csv)
    job = job_services.job_create(
        project=project,
        kind="dataset.redact",
        params={"version_id": version.pk, "mode": "pseudonym"},
        created_by=member,
    )

    assert execute_job(job.pk, worker_id="test") == "succeeded", Job.objects.get(pk=job.pk).error

    child = version.dataset.versions.get(number=2)
    assert child.parent == version and child.operation == "redact" and child.rows == version.rows
    text = media_path(child.storage_path).read_text(encoding="utf-8")
    for original in (
        "13812345678",
        "11010519491231002X",
        "clinic.help@example.org",
        "010-62345678",
    ):
        assert original not in text
    # Pseudonyms look real on purpose (a fake phone is still a phone number), so the re-scan of
    # the child finds fakes: what matters is that none of them is an original value.
    assert child.pii_report is not None


@pytest.mark.django_db(transaction=True)
def test_tag_redaction_leaves_nothing_for_a_rescan_to_find(project, member, qa_csv):
    from workers.tasks.runtime import execute_job

    version, _ = do_import(project, member, qa_csv)
    job = job_services.job_create(
        project=project,
        kind="dataset.redact",
        params={"version_id": version.pk, "mode": "tag"},
        created_by=member,
    )
    assert execute_job(job.pk, worker_id="test") == "succeeded", Job.objects.get(pk=job.pk).error

    child = version.dataset.versions.get(number=2)
    text = media_path(child.storage_path).read_text(encoding="utf-8")
    assert "<CN_PHONE>" in text and "<CN_RESIDENT_ID>" in text and "<EMAIL>" in text
    assert not any(
        child.pii_report["counts"].get(t) for t in ("CN_PHONE", "CN_RESIDENT_ID", "EMAIL")
    )


def test_csv_download_escapes_cells_that_start_like_formulas(db, client, project, people, tmp_path):
    rows = [('=HYPERLINK("http://x")', "+1 and -1"), ("@SUM(A1)", "plain")]
    version, _ = do_import(project, people["member"], write_csv(tmp_path / "f.csv", rows))
    client.force_login(people["viewer"])

    response = client.get(
        reverse("datasets:download", args=[project.pk, version.dataset_id, version.number, "csv"])
    )

    body = b"".join(response.streaming_content).decode("utf-8")
    parsed = list(csv.reader(io.StringIO(body)))
    cells = [c for row in parsed[1:] for c in row]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells), cells
    assert any("HYPERLINK" in c for c in cells)


def test_the_version_page_shows_rows_with_paging_to_a_viewer(db, client, project, people, tmp_path):
    rows = [(f"question {i}", f"answer {i}") for i in range(45)]
    version, _ = do_import(
        project,
        people["member"],
        write_csv(tmp_path / "many.csv", rows, header=("question", "answer")),
    )
    client.force_login(people["viewer"])
    url = reverse("datasets:version", args=[project.pk, version.dataset_id, version.number])

    page3 = client.get(url + "?page=3").content.decode()

    assert "question 44" in page3 and "question 1<" not in page3


@pytest.mark.django_db(transaction=True)
def test_the_stats_job_recounts_lengths_in_a_tokenizers_tokens(project, member, tmp_path):
    from workers.tasks.runtime import execute_job

    rows = [
        (
            "How do I measure blood pressure at home?",
            "Sit still for five minutes, then measure twice.",
        )
    ] * 3
    version, _ = do_import(
        project, member, write_csv(tmp_path / "en.csv", rows, header=("question", "answer"))
    )
    assert version.stats["length"]["unit"] == "chars"
    job = job_services.job_create(
        project=project,
        kind="dataset.stats",
        params={"version_id": version.pk, "tokenizer": "all-MiniLM-L6-v2"},
        created_by=member,
    )

    assert execute_job(job.pk, worker_id="test") == "succeeded", Job.objects.get(pk=job.pk).error

    version.refresh_from_db()
    assert (
        version.stats["length"]["unit"] == "tokens"
        and version.stats["tokenizer"] == "all-MiniLM-L6-v2"
    )
    # ~20 English words become ~20-25 word pieces: far fewer than the ~90 characters counted before.
    assert 15 <= version.stats["length"]["mean"] <= 40


@pytest.mark.django_db(transaction=True)
def test_the_api_refuses_a_bad_file_with_every_error_and_stores_nothing(client, project, member):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from workers.tasks.runtime import execute_job

    client.force_login(member)
    before_counts, before_media = counts(), media_listing()
    body = b"question,answer\nq1,a1\nq2,\n,a3\n"

    response = client.post(
        reverse("api:datasets", args=[project.pk]),
        {
            "file": SimpleUploadedFile("bad.csv", body),
            "name": "Bad",
            "license": "CC0-1.0",
            "source": "tests",
        },
    )

    assert response.status_code == 202  # every import is a job; its result has the errors
    assert execute_job(response.json()["id"], worker_id="test") == "failed"
    job = client.get(response["Location"]).json()
    assert job["result"]["total"] == 2
    assert [e["row"] for e in job["result"]["errors"]] == [2, 3]
    assert counts()[:2] == before_counts[:2] and media_listing() == before_media


@pytest.mark.django_db(transaction=True)
def test_the_api_imports_a_jsonl_file_and_reports_its_version(client, project, member):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from workers.tasks.runtime import execute_job

    client.force_login(member)
    body = "\n".join(
        json.dumps({"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"})
        for i in range(5)
    ).encode()

    response = client.post(
        reverse("api:datasets", args=[project.pk]),
        {
            "file": SimpleUploadedFile("prefs.jsonl", body),
            "name": "Prefs",
            "license": "MIT",
            "source": "tests",
            "validation_fraction": "0.4",
            "seed": "7",
        },
    )

    assert response.status_code == 202, response.content
    assert execute_job(response.json()["id"], worker_id="test") == "succeeded"
    result = client.get(response["Location"]).json()["result"]
    version = client.get(
        reverse("api:dataset_version", args=[project.pk, result["dataset_id"], result["version"]])
    ).json()
    assert version["rows"] == 5 and len(version["sha256"]) == 64
    assert sum(version["split_counts"].values()) == 5
    assert Dataset.objects.get(name="Prefs").schema == "preference"
