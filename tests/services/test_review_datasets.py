"""Dataset versions awaiting approval share the review inbox with flagged outputs: they show their
moderation counts there, and are decided through the datasets app's own rules (four eyes, a PII
scan first)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.datasets.models import Approval
from apps.datasets.services import version_set_pii_report
from tests.services.test_datasets import do_import, write_csv

ROWS = [
    ("张先生的电话是多少?", "请拨打 13812345678 联系张先生。"),
    ("What should I eat?", "Vegetables and fish."),
]


@pytest.fixture
def pending(db, project, people, tmp_path):
    project.require_dataset_approval = True
    project.save(update_fields=["require_dataset_approval"])
    version, _ = do_import(project, people["member"], write_csv(tmp_path / "qa.csv", ROWS))
    assert version.approval == Approval.PENDING
    return version


def decide(client, project, version, decision: str, reason: str) -> dict:
    response = client.post(
        reverse("review:decide"),
        {"item": [f"dataset:{project.pk}:{version.pk}"], "decision": decision, "reason": reason},
        HTTP_ACCEPT="application/json",
    )
    return response.json()["results"][0]


def test_a_pending_version_is_in_the_inbox_with_its_flag_counts(client, project, people, pending):
    client.force_login(people["reviewer"])
    html = client.get(reverse("review:inbox")).content.decode()
    assert f'data-key="dataset:{pending.pk}"' in html
    assert "1 of 2 rows flagged" in html
    assert 'rv-cat">Personal data<' in html
    kinds = client.get(reverse("review:inbox"), {"kind": "text"}).content.decode()
    assert f'data-key="dataset:{pending.pk}"' not in kinds


def test_approving_needs_a_pii_scan_first_then_it_is_approved_once(
    client, project, people, pending
):
    client.force_login(people["reviewer"])
    refused = decide(client, project, pending, "approve", "looks fine")
    assert not refused["ok"] and "PII scan" in refused["message"]
    version_set_pii_report(version=pending, report={"rows": 2, "findings": {}})
    assert decide(client, project, pending, "approve", "looks fine")["ok"]
    pending.refresh_from_db()
    assert pending.approval == Approval.APPROVED and pending.decided_by == people["reviewer"]
    again = decide(client, project, pending, "reject", "no")
    assert not again["ok"] and "not awaiting approval" in again["message"]


def test_the_importer_cannot_decide_on_their_own_version(client, project, people, tmp_path):
    from apps.projects.models import Membership

    Membership.objects.filter(project=project, user=people["reviewer"]).update(role="admin")
    project.require_dataset_approval = True
    project.save(update_fields=["require_dataset_approval"])
    version, _ = do_import(project, people["reviewer"], write_csv(tmp_path / "q.csv", ROWS))
    client.force_login(people["reviewer"])
    result = decide(client, project, version, "reject", "mine")
    assert not result["ok"]
    version.refresh_from_db()
    assert version.approval == Approval.PENDING
