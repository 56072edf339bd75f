"""A dedup child of a scanned version carries its parent's PII report, restricted to the rows it
kept and renumbered: a reviewer approves it without a second scan (issue 19, item 3)."""

from __future__ import annotations

import html
import json

import pytest

from apps.datasets import services
from apps.datasets.carry import carried_pii_report, child_row
from apps.datasets.models import Approval
from apps.datasets.storage import media_path
from apps.jobs import services as job_services
from apps.jobs.models import Job
from tests.services.test_datasets import do_import, write_csv
from workers.data.pii import scan_jsonl

# Rows 2 and 5 repeat rows 1 and 3 exactly: "keep one" drops them, so the phone in row 3 is
# row 2 of the child, the email in row 4 is row 3, and the phone of row 6 is row 4.
ROWS = [
    ("What should patients with hypertension watch?", "Less salt, regular medication."),
    ("What should patients with hypertension watch?", "Less salt, regular medication."),
    ("How do I reach Mr Zhang?", "Call 13812345678 and ask for Mr Zhang."),
    ("Can I email the clinic?", "Yes: clinic.help@example.org, any time."),
    ("How do I reach Mr Zhang?", "Call 13812345678 and ask for Mr Zhang."),
    ("And the night desk?", "Call 13987654321 after 10 pm."),
]


def run(kind: str, version, user, **params) -> Job:
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(
        project=version.dataset.project,
        kind=kind,
        params={"version_id": version.pk, **params},
        created_by=user,
    )
    assert execute_job(job.pk, worker_id="test") == "succeeded", Job.objects.get(pk=job.pk).error
    return Job.objects.get(pk=job.pk)


def dedup_child(version, user):
    job = run("dataset.dedup", version, user, semantic=False, keep_one=True)
    return version.dataset.versions.get(pk=job.result["new_version_id"])


@pytest.fixture
def scanned(project, people, tmp_path):
    """v1 imported by the member and scanned for personal data."""
    version, _ = do_import(project, people["member"], write_csv(tmp_path / "qa.csv", ROWS))
    run("dataset.pii_scan", version, people["member"])
    version.refresh_from_db()
    assert version.pii_report["types"]["CN_PHONE"]["rows"] == [3, 5, 6]
    return version


@pytest.mark.django_db(transaction=True)
def test_a_reviewer_approves_a_dedup_child_without_a_second_scan(project, people, scanned):
    assert project.require_dataset_approval
    child = dedup_child(scanned, people["member"])
    assert child.rows == 4 and child.approval == Approval.PENDING

    services.version_decide(
        version=child, actor=people["reviewer"], role="reviewer", approve=True, comment="report ok"
    )

    child.refresh_from_db()
    assert child.approval == Approval.APPROVED
    assert not Job.objects.filter(kind="dataset.pii_scan", params__version_id=child.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_carried_findings_point_at_the_childs_rows_and_match_a_scan_of_it(people, scanned):
    child = dedup_child(scanned, people["member"])
    report = child.pii_report
    lines = media_path(child.storage_path).read_text(encoding="utf-8").splitlines()

    assert report["carried_from"]["version"] == scanned.number
    assert report["types"]["CN_PHONE"]["rows"] == [2, 4]
    assert report["types"]["EMAIL"]["rows"] == [3]
    assert "13812345678" in lines[2 - 1] and "13987654321" in lines[4 - 1]
    assert "clinic.help@example.org" in lines[3 - 1]
    # The dropped repeat of row 3 takes its phone number with it: counts are the kept rows'.
    assert scanned.pii_report["counts"]["CN_PHONE"] == 3 and report["counts"]["CN_PHONE"] == 2
    fresh = scan_jsonl(media_path(child.storage_path)).to_dict()
    for key in ("rows_scanned", "rows_with_pii", "total_findings", "counts", "types"):
        assert report[key] == fresh[key], key


@pytest.mark.django_db(transaction=True)
def test_the_version_page_says_the_report_was_carried_from_the_parent(client, people, scanned):
    child = dedup_child(scanned, people["member"])
    client.force_login(people["reviewer"])

    page = html.unescape(client.get(child.get_absolute_url()).content.decode())

    assert 'id="pii-carried"' in page
    assert f'Carried from the scan of <a href="{scanned.get_absolute_url()}">v1</a>' in page
    assert 'id="decision-approve-refusal"' not in page  # approving it needs no second scan


@pytest.mark.django_db(transaction=True)
def test_a_dedup_child_of_an_unscanned_version_still_needs_its_own_scan(project, people, tmp_path):
    version, _ = do_import(project, people["member"], write_csv(tmp_path / "qa.csv", ROWS))
    child = dedup_child(version, people["member"])

    assert child.pii_report is None
    with pytest.raises(Exception, match="PII scan first"):
        services.version_decide(
            version=child, actor=people["reviewer"], role="reviewer", approve=True, comment="ok"
        )


@pytest.mark.django_db(transaction=True)
def test_a_redact_child_keeps_its_own_rescan_not_a_carried_report(people, scanned):
    run("dataset.redact", scanned, people["member"], mode="tag")
    child = scanned.dataset.versions.get(operation="redact")

    assert child.pii_report is not None and "carried_from" not in child.pii_report
    assert not child.pii_report["counts"].get("CN_PHONE")


def test_a_parent_report_that_does_not_name_every_row_means_a_full_scan(
    db, project, people, tmp_path
):
    version, _ = do_import(project, people["member"], write_csv(tmp_path / "qa.csv", ROWS))
    real = scan_jsonl(media_path(version.storage_path)).to_dict()
    real["types"]["CN_PHONE"].update(rows=[3], rows_truncated=True)  # a report listing 1 of 3
    services.version_set_pii_report(version=version, report=real)
    version.refresh_from_db()
    child_path = tmp_path / "child.jsonl"
    kept = [
        line
        for n, line in enumerate(media_path(version.storage_path).read_text().splitlines(), 1)
        if n not in (2, 5)
    ]
    child_path.write_text("".join(line + "\n" for line in kept))

    report = carried_pii_report(
        parent=version, child_path=child_path, dropped={2, 5}, workdir=tmp_path
    )

    assert "carried_from" not in report
    assert report["types"]["CN_PHONE"]["rows"] == [2, 4]
    assert json.dumps(report["counts"]) == json.dumps(scan_jsonl(child_path).to_dict()["counts"])


def test_rows_are_renumbered_past_the_dropped_ones():
    dropped = [2, 5]
    assert [child_row(r, dropped) for r in (1, 2, 3, 4, 5, 6)] == [1, None, 2, 3, None, 4]
