"""The review inbox offers a dataset version's decision only where the server would take it, and
says why not in the words the server refuses with, the same as the version page (issue 19)."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from apps.datasets import services
from apps.datasets.decisions import decision_options
from apps.datasets.models import Approval
from apps.jobs.models import Job
from tests.services.test_datasets import QA_ROWS, do_import, write_csv

PII_FIRST = "Run a PII scan first"


@pytest.fixture
def version(project, people, tmp_path):
    """v1 imported by the admin: pending approval, not scanned."""
    v, _ = do_import(project, people["admin"], write_csv(tmp_path / "qa.csv", QA_ROWS))
    assert v.approval == Approval.PENDING
    return v


def scan(version) -> None:
    services.version_set_pii_report(version=version, report={"counts": {}, "types": {}})
    version.refresh_from_db()


class Item:
    """One dataset version as the inbox renders it for one user (the page and its live partial)."""

    def __init__(self, client, user, version, partial: bool = False):
        client.force_login(user)
        url = reverse("review:inbox") + ("?partial=1" if partial else "")
        page = client.get(url).content.decode()
        key = f"dataset:{version.pk}"
        found = re.search(rf'<li [^>]*data-key="{key}".*?</li>', page, re.S)
        assert found, f"{key} is not in the inbox"
        self.html = found.group(0)
        self.li = re.match(r"<li [^>]*>", self.html).group(0)
        self.checkbox = re.search(r'<input type="checkbox"[^>]*>', self.html).group(0)
        self.key = key.replace(":", "")

    @property
    def selectable(self) -> bool:
        return re.search(r"\sdisabled(\s|>)", self.checkbox) is None

    def attribute(self, name: str) -> str | None:
        found = re.search(rf'\s{name}="([^"]*)"', self.li)
        return html.unescape(found.group(1)) if found else None

    @property
    def reason(self) -> str | None:
        """The visible reason the item carries, linked to its checkbox."""
        found = re.search(rf'id="rv-why-{self.key}">(.*?)</', self.html, re.S)
        if found is None:
            return None
        assert f'aria-describedby="rv-why-{self.key}"' in self.checkbox
        return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def decide(client, user, version, decision: str) -> dict:
    """What the inbox's JSON decision answers for this one item."""
    client.force_login(user)
    response = client.post(
        reverse("review:decide"),
        {
            "item": f"dataset:{version.dataset.project_id}:{version.pk}",
            "decision": decision,
            "reason": "looked at the rows",
        },
        HTTP_ACCEPT="application/json",
    )
    version.refresh_from_db()
    [result] = response.json()["results"]
    return result


def test_without_a_pii_scan_approve_is_refused_on_the_item_with_the_servers_reason(
    client, people, version
):
    item = Item(client, people["reviewer"], version)

    assert item.selectable  # it may still be rejected
    refusal = item.attribute("data-approve-refusal")
    assert refusal.startswith(PII_FIRST)
    assert item.reason == f"Approve: {refusal}"
    assert item.attribute("data-own") == "0" and item.attribute("data-reject-refusal") is None
    # The same words as the version page's form and the server's answer.
    assert (
        refusal
        == decision_options(
            version=version, actor=people["reviewer"], role="reviewer"
        ).approve_refusal
    )
    assert decide(client, people["reviewer"], version, "approve") == {
        "key": f"dataset:{version.pk}",
        "ok": False,
        "message": refusal,
    }
    assert version.approval == Approval.PENDING
    assert decide(client, people["reviewer"], version, "reject")["ok"]
    assert version.approval == Approval.REJECTED


def test_the_uploader_cannot_select_their_version_and_is_told_why(client, people, version):
    scan(version)
    item = Item(client, people["admin"], version)

    assert not item.selectable
    assert item.attribute("data-own") == "1"  # the keyboard skips it too
    assert "another reviewer must decide on it" in item.reason
    answer = decide(client, people["admin"], version, "approve")
    assert answer["message"] == item.reason and not answer["ok"]
    assert version.approval == Approval.PENDING and version.decided_by is None


def test_a_reviewer_in_its_lineage_cannot_select_it_though_someone_else_uploaded_it(
    client, project, people, version
):
    """Not only the uploader: the reviewer launched a redaction that produced this version (its
    content was already stored), so the four eyes rule keeps them off it, in the inbox too."""
    scan(version)
    Job.objects.create(
        project=project,
        created_by=people["reviewer"],
        kind="dataset.redact",
        queue="cpu",
        state="succeeded",
        result={"version_id": version.pk},
    )
    item = Item(client, people["reviewer"], version)

    assert not item.selectable and "another reviewer must decide on it" in item.reason
    assert decide(client, people["reviewer"], version, "reject")["message"] == item.reason
    assert version.approval == Approval.PENDING


def test_a_scanned_version_of_someone_else_is_offered_without_a_reason(client, people, version):
    scan(version)
    item = Item(client, people["reviewer"], version)
    partial = Item(client, people["reviewer"], version, partial=True)

    for shown in (item, partial):
        assert shown.selectable and shown.reason is None
        assert shown.attribute("data-approve-refusal") is None
        assert shown.attribute("data-own") == "0"
    assert decide(client, people["reviewer"], version, "approve")["ok"]
    assert version.approval == Approval.APPROVED and version.decided_by == people["reviewer"]


def test_the_live_partial_shows_the_same_refusal_as_the_page(client, people, version):
    page = Item(client, people["reviewer"], version)
    partial = Item(client, people["reviewer"], version, partial=True)

    assert partial.reason == page.reason and partial.reason.startswith("Approve: " + PII_FIRST)
