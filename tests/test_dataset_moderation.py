"""Dataset rows through the project's moderation rules as a version is made: the counts, the row
numbers and the examples in the version's report and on its page; a flag decides nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.datasets import services
from apps.datasets.models import Approval, Operation
from apps.datasets.moderation import scan_columns
from apps.datasets.storage import media_path
from apps.moderation.services import ruleset_save
from tests.services.test_datasets import do_import, write_csv

CLEAN_ROWS = [
    ("高血压患者应该注意什么?", "低盐饮食, 规律服药。"),
    ("How often should I check my blood pressure?", "Twice a day, at the same times."),
]
PHONE = "13812345678"
RESIDENT_ID = "11010519491231002X"
FLAGGED_ROWS = [
    *CLEAN_ROWS,
    ("张先生的电话是多少?", f"请拨打 {PHONE} 联系张先生。"),
    (f"我的身份证号是 {RESIDENT_ID}, 能查到吗?", "不能在这里查询。"),
    ("What should I eat?", "Vegetables and fish."),
]


@pytest.fixture
def flagged_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "qa.csv", FLAGGED_ROWS)


def test_importing_rows_with_pii_counts_them_by_category_with_row_numbers(
    project, member, flagged_csv
):
    version, _ = do_import(project, member, flagged_csv)
    version.refresh_from_db()

    report = version.moderation_report
    assert report["ruleset_version"] == 1  # the default rules, written on first use
    assert report["rows"] == 5
    assert report["flagged_rows"] == 2
    assert report["by_category"] == {"pii": 2}
    assert [(e["row"], e["column"], e["category"]) for e in report["examples"]] == [
        (3, "answer", "pii"),
        (4, "question", "pii"),
    ]
    assert PHONE in report["examples"][0]["text"]
    assert RESIDENT_ID in report["examples"][1]["text"]


def test_a_flagged_version_stays_pending_and_its_import_is_audited_with_the_counts(
    project, member, flagged_csv
):
    version, _ = do_import(project, member, flagged_csv)
    version.refresh_from_db()

    assert version.approval == Approval.PENDING  # reviewers decide, nothing is auto-rejected
    event = AuditEvent.objects.get(action="dataset.version.import", target_id=str(version.pk))
    assert event.data["flagged_rows"] == 2
    assert event.data["ruleset_version"] == 1


def test_a_clean_dataset_has_a_report_with_nothing_flagged(project, member, tmp_path):
    version, _ = do_import(project, member, write_csv(tmp_path / "clean.csv", CLEAN_ROWS))
    version.refresh_from_db()

    assert version.moderation_report["rows"] == 2
    assert version.moderation_report["flagged_rows"] == 0
    assert version.moderation_report["by_category"] == {}
    assert version.moderation_report["examples"] == []


def test_the_version_page_shows_the_counts_and_the_examples(client, project, people, flagged_csv):
    version, _ = do_import(project, people["member"], flagged_csv)
    client.force_login(people["reviewer"])

    response = client.get(version.get_absolute_url())

    body = response.content.decode()
    assert response.status_code == 200
    assert "2 of 5 rows flagged by rule set v1." in body
    assert 'id="moderation-examples"' in body
    assert PHONE in body and RESIDENT_ID in body
    assert "<code>pii</code>" in body


def test_the_page_of_a_clean_version_says_nothing_was_flagged(client, project, people, tmp_path):
    version, _ = do_import(project, people["member"], write_csv(tmp_path / "c.csv", CLEAN_ROWS))
    client.force_login(people["member"])

    body = client.get(version.get_absolute_url()).content.decode()

    assert "Nothing flagged" in body
    assert "0 of 2 rows flagged by rule set v1." in body


def test_the_projects_current_rules_are_used_and_their_version_recorded(project, people, tmp_path):
    ruleset_save(
        project=project,
        rows=[{"kind": "keyword", "pattern": "blood pressure", "category": "custom"}],
        actor=people["admin"],
        comment="only this",
    )

    version, _ = do_import(project, people["member"], write_csv(tmp_path / "c.csv", CLEAN_ROWS))
    version.refresh_from_db()

    report = version.moderation_report
    assert report["ruleset_version"] == 2
    assert report["by_category"] == {"custom": 1}
    assert [(e["row"], e["column"]) for e in report["examples"]] == [(2, "question")]


def test_chat_rows_are_checked_message_by_message(project, member, tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Whose number is this?"},
                {"role": "assistant", "content": f"Call {PHONE}."},
            ]
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")

    version, _ = do_import(project, member, path, name="Chats")
    version.refresh_from_db()

    assert version.moderation_report["flagged_rows"] == 1
    example = version.moderation_report["examples"][0]
    assert (example["row"], example["column"]) == (2, "messages[2] assistant")


def test_image_file_names_are_not_checked_but_captions_are():
    columns = scan_columns({"image": "images/13812345678.png", "caption": "a cat"})

    assert columns == {"caption": "a cat"}


def test_a_derived_version_gets_its_own_report(project, member, flagged_csv, tmp_path):
    parent, _ = do_import(project, member, flagged_csv)
    redacted = tmp_path / "redacted.jsonl"
    lines = media_path(parent.storage_path).read_text(encoding="utf-8")
    redacted.write_text(
        lines.replace(PHONE, "<CN_PHONE>").replace(RESIDENT_ID, "<CN_RESIDENT_ID>"),
        encoding="utf-8",
    )

    child, created = services.version_derive(
        parent=parent,
        canonical_path=redacted,
        sha256="f" * 64,
        rows=5,
        operation=Operation.REDACT,
        params={"mode": "tag"},
        actor=member,
    )
    child.refresh_from_db()

    assert created
    assert child.moderation_report["flagged_rows"] == 0
    parent.refresh_from_db()
    assert parent.moderation_report["flagged_rows"] == 2


def test_a_version_made_before_the_rules_shows_that_it_was_not_checked(
    client, project, people, flagged_csv
):
    version, _ = do_import(project, people["member"], flagged_csv)
    type(version).objects.filter(pk=version.pk).update(moderation_report=None)
    client.force_login(people["member"])

    body = client.get(reverse("datasets:version", args=[project.pk, version.dataset_id, 1]))

    assert "were not checked against the project" in body.content.decode()


def test_the_report_speaks_chinese(client, project, people, flagged_csv):
    from django.utils import translation

    version, _ = do_import(project, people["member"], flagged_csv)
    client.force_login(people["reviewer"])
    try:
        response = client.get(version.get_absolute_url(), headers={"accept-language": "zh-Hans"})
    finally:
        translation.deactivate()

    body = response.content.decode()
    assert "规则集 v1 在 5 行中标记了 2 行。" in body
    assert "内容审核规则" in body and "匹配文本" in body
