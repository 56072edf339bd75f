"""A dataset version's approval for training, decided through the API with a token, under the
review inbox's rules (four eyes, PII report first, a reason, 409 once decided)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.api.tokens import token_create
from apps.datasets.models import DatasetVersion
from apps.datasets.services import dataset_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(project, people, tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nWhat is BP?,Blood pressure.\n", encoding="utf-8")
    version, _ = dataset_import(
        project=project,
        actor=people["member"],
        upload_path=path,
        filename="qa.csv",
        name="QA",
        license="CC0-1.0",
        source="tests",
    )
    return version


def decide(people, project, version, persona: str, **body):
    _, raw = token_create(user=people[persona], name="t", project_id=project.pk)
    url = reverse(
        "api:dataset_version_decision", args=[project.pk, version.dataset_id, version.number]
    )
    return Client().post(
        url, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )


def test_a_reviewer_approves_a_pending_version_with_a_token(people, project, version):
    assert version.approval == "pending"
    unscanned = decide(people, project, version, "reviewer", decision="approve", reason="ok")
    assert unscanned.status_code == 400 and "PII scan" in unscanned.json()["error"]["message"]
    # As after the version's PII scan ran (its report is what reviewers read).
    DatasetVersion.objects.filter(pk=version.pk).update(pii_report={"rows_with_pii": 0})
    answer = decide(people, project, version, "reviewer", decision="approve", reason="checked")
    assert answer.status_code == 200, answer.content
    assert answer.json()["approval"] == "approved"
    assert DatasetVersion.objects.get(pk=version.pk).approval == "approved"
    again = decide(people, project, version, "admin", decision="reject", reason="no")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_pending"


def test_the_importer_a_member_and_a_reasonless_rejection_are_refused(people, project, version):
    mine = decide(people, project, version, "member", decision="approve", reason="ok")
    assert mine.status_code == 403  # members do not review
    nothing = decide(people, project, version, "reviewer")
    assert nothing.status_code == 400 and nothing.json()["error"]["param"] == "decision"
    bare = decide(people, project, version, "reviewer", decision="reject", reason="")
    assert bare.status_code == 400 and bare.json()["error"]["param"] == "reason"
    assert DatasetVersion.objects.get(pk=version.pk).approval == "pending"
