"""The version page's decision form is disabled, with the reason, wherever the server would
refuse the decision, and enabled where it would pass (issue 19, item 3)."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from apps.datasets import services
from apps.datasets.models import Approval
from tests.services.test_datasets import QA_ROWS, do_import, write_csv

PII_FIRST = "Run a PII scan first"


@pytest.fixture
def version(project, people, tmp_path):
    """v1 imported by the admin: pending approval, not scanned."""
    v, _ = do_import(project, people["admin"], write_csv(tmp_path / "qa.csv", QA_ROWS))
    return v


def scan(version) -> None:
    services.version_set_pii_report(version=version, report={"counts": {}, "types": {}})
    version.refresh_from_db()


class Form:
    """The decision form as rendered for one user."""

    def __init__(self, client, user, version):
        client.force_login(user)
        self.page = client.get(version.get_absolute_url()).content.decode()

    def tag(self, element_id: str) -> str:
        found = re.search(rf'<[a-z]+[^>]*\bid="{element_id}"[^>]*>', self.page)
        assert found, f"no #{element_id} on the page"
        return found.group(0)

    def disabled(self, element_id: str) -> bool:
        return re.search(r"\sdisabled(\s|>|=)", self.tag(element_id)) is not None

    def text(self, element_id: str) -> str | None:
        found = re.search(rf'id="{element_id}">(.*?)</p>', self.page, re.S)
        return html.unescape(found.group(1)).strip() if found else None

    @property
    def whole_form_disabled(self) -> bool:
        return self.disabled("decision-fields")


def post(client, user, version, decision: str):
    client.force_login(user)
    url = reverse(
        "datasets:decide", args=[version.dataset.project_id, version.dataset_id, version.number]
    )
    response = client.post(url, {"decision": decision, "comment": "looked at it"})
    version.refresh_from_db()
    return response


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_it_is_disabled_for_someone_who_is_not_a_reviewer(client, people, version, role):
    scan(version)
    form = Form(client, people[role], version)

    assert form.whole_form_disabled
    assert form.text("decision-refusal") == "Only reviewers and admins decide on datasets"
    assert post(client, people[role], version, "approve").status_code == 403
    assert version.approval == Approval.PENDING


def test_it_is_disabled_for_the_uploader_four_eyes(client, people, version):
    scan(version)
    form = Form(client, people["admin"], version)

    assert form.whole_form_disabled
    assert "another reviewer must decide on it" in form.text("decision-refusal")
    post(client, people["admin"], version, "approve")
    assert version.approval == Approval.PENDING and version.decided_by is None


def test_without_a_pii_report_approve_is_disabled_and_reject_is_not(client, people, version):
    form = Form(client, people["reviewer"], version)

    assert not form.whole_form_disabled and form.text("decision-refusal") is None
    assert form.disabled("decision-approve") and not form.disabled("decision-reject")
    assert form.text("decision-approve-refusal").startswith("Approve: " + PII_FIRST)
    post(client, people["reviewer"], version, "approve")
    assert version.approval == Approval.PENDING
    post(client, people["reviewer"], version, "reject")
    assert version.approval == Approval.REJECTED


def test_an_approved_version_offers_only_a_change_to_reject(client, people, version):
    scan(version)
    post(client, people["reviewer"], version, "approve")
    assert version.approval == Approval.APPROVED

    form = Form(client, people["reviewer"], version)

    assert not form.whole_form_disabled
    assert form.disabled("decision-approve") and not form.disabled("decision-reject")
    assert form.text("decision-approve-refusal") == "Approve: Already approved"
    post(client, people["reviewer"], version, "reject")
    assert version.approval == Approval.REJECTED


def test_a_rejected_unscanned_version_has_no_decision_left_to_record(client, people, version):
    post(client, people["reviewer"], version, "reject")
    assert version.approval == Approval.REJECTED

    form = Form(client, people["reviewer"], version)

    assert form.whole_form_disabled
    refusal = form.text("decision-refusal")
    assert "Already rejected" in refusal and PII_FIRST in refusal
    post(client, people["reviewer"], version, "approve")
    assert version.approval == Approval.REJECTED


def test_it_is_enabled_where_the_decision_would_pass(client, people, version):
    scan(version)
    form = Form(client, people["reviewer"], version)

    assert not form.whole_form_disabled and form.text("decision-refusal") is None
    assert not form.disabled("decision-approve") and not form.disabled("decision-reject")
    assert not form.disabled("decision-submit")
    assert form.text("decision-approve-refusal") is None
    post(client, people["reviewer"], version, "approve")
    assert version.approval == Approval.APPROVED and version.decided_by == people["reviewer"]
