"""The audit log pages: a project's (admins and reviewers) and the platform's (staff), their
filters, paging and exports (CSV safe in a spreadsheet, JSONL one object per line)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.projects.models import Project

FORMULA = "=cmd|' /C calc'!A0"


def _event(project, actor, action, *, days_ago: int = 0, target_type="", **data) -> AuditEvent:
    event = audit_record(action=action, actor=actor, project=project, data=data)
    changes = {}
    if days_ago:
        changes["created_at"] = timezone.now() - timedelta(days=days_ago)
    if target_type:
        changes.update(target_type=target_type, target_id="7")
    if changes:  # a test's back-dating: the model itself never rewrites a row
        AuditEvent.objects.filter(pk=event.pk).update(**changes)
    return event


@pytest.fixture
def log(project, people):
    reviewer, admin = people["reviewer"], people["admin"]
    return {
        "approve": _event(
            project, reviewer, "review.approve", target_type="output", ruleset_version=2
        ),
        "reject": _event(
            project,
            reviewer,
            "review.reject",
            days_ago=3,
            target_type="output",
            reason=FORMULA,
            ruleset_version=2,
        ),
        "rules": _event(
            project,
            admin,
            "moderation.rules.change",
            days_ago=10,
            target_type="rulesetversion",
            version=3,
            previous=2,
            comment="stricter pii",
        ),
        "dataset": _event(
            project,
            admin,
            "dataset.version.approve",
            days_ago=20,
            target_type="datasetversion",
            version=5,
            comment="checked",
        ),
    }


@pytest.fixture
def elsewhere(make_user):
    other = Project.objects.create(name="Elsewhere")
    return _event(other, make_user("stranger"), "review.approve", target_type="output")


def _page(client, user, project=None, **params):
    client.force_login(user)
    url = reverse("audit:project", args=[project.pk]) if project else reverse("audit:platform")
    return client.get(url, params)


def _ids(response) -> list[int]:
    return [row["id"] for _, row in response.context["rows"]]


# ------------------------------------------------------------------ who may read


def test_a_reviewer_reads_the_projects_log_newest_first(client, project, people, log, elsewhere):
    response = _page(client, people["reviewer"], project)

    assert response.status_code == 200
    ids = [log[k].pk for k in ("approve", "reject", "rules", "dataset")]
    assert _ids(response) == ids
    assert elsewhere.pk not in _ids(response)
    body = response.content.decode()
    assert "stricter pii" in body and "review.reject" in body


def test_an_admin_reads_it_too(client, project, people, log):
    assert _page(client, people["admin"], project).status_code == 200


@pytest.mark.parametrize(("persona", "status"), [("member", 403), ("viewer", 403)])
def test_it_refuses_members_without_the_role(client, project, people, log, persona, status):
    assert _page(client, people[persona], project).status_code == status


def test_it_rejects_outsider_as_if_the_project_did_not_exist(client, project, people, log):
    assert _page(client, people["outsider"], project).status_code == 404
    assert _page(client, people["outsider"], project, format="csv").status_code == 404


def test_an_anonymous_visitor_is_sent_to_log_in(client, project, log):
    response = client.get(reverse("audit:project", args=[project.pk]))

    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


def test_the_platform_log_is_for_staff_only(client, project, people, log, elsewhere, make_user):
    # A project admin is not platform staff: the page does not exist for them.
    assert _page(client, people["admin"]).status_code == 404
    assert _page(client, people["admin"], format="jsonl").status_code == 404

    response = _page(client, make_user("staffer", is_staff=True))

    assert response.status_code == 200
    assert elsewhere.pk in _ids(response) and log["approve"].pk in _ids(response)
    assert "Elsewhere" in response.content.decode()


def test_the_log_has_no_write_route(client, project, people, log):
    client.force_login(people["admin"])
    before = list(AuditEvent.objects.values_list("pk", "action", "data"))

    response = client.post(reverse("audit:project", args=[project.pk]), {"action": "x"})

    assert response.status_code == 405
    assert list(AuditEvent.objects.values_list("pk", "action", "data")) == before


# ------------------------------------------------------------------ columns and filters


def test_it_shows_why_and_the_rule_set_version_in_their_own_columns(client, project, people, log):
    response = _page(client, people["reviewer"], project)
    rows = {row["id"]: row for _, row in response.context["rows"]}

    assert rows[log["reject"].pk]["reason"] == FORMULA
    assert rows[log["reject"].pk]["ruleset_version"] == 2
    assert rows[log["rules"].pk]["ruleset_version"] == 3  # a rule change records it as "version"
    assert rows[log["rules"].pk]["reason"] == "stricter pii"
    # A dataset version's number is not a rule-set version: it stays with the other details.
    assert rows[log["dataset"].pk]["ruleset_version"] is None
    assert '"version":5' in rows[log["dataset"].pk]["details"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "review."}, ["approve", "reject"]),
        ({"action": "moderation"}, ["rules"]),
        ({"actor": "ADMIN"}, ["rules", "dataset"]),
        ({"target_type": "datasetversion"}, ["dataset"]),
        ({"date_from": "DAYS:-11", "date_to": "DAYS:-2"}, ["reject", "rules"]),
        ({"date_to": "DAYS:-15"}, ["dataset"]),
        ({"action": "review.", "date_from": "DAYS:-1"}, ["approve"]),
    ],
)
def test_it_filters(client, project, people, log, params, expected):
    today = timezone.localdate()
    params = {
        k: (today + timedelta(days=int(v[5:]))).isoformat() if v.startswith("DAYS:") else v
        for k, v in params.items()
    }

    response = _page(client, people["reviewer"], project, **params)

    assert response.status_code == 200
    assert _ids(response) == [log[k].pk for k in expected]


def test_it_pages_fifty_events_at_a_time(client, project, people):
    for i in range(55):
        audit_record(action="review.approve", actor=people["admin"], project=project, data={"i": i})

    first = _page(client, people["reviewer"], project)
    second = _page(client, people["reviewer"], project, page="2")

    assert len(first.context["rows"]) == 50
    assert len(second.context["rows"]) == 5
    assert first.context["rows"][0][1]["data"] == {"i": 54}


JUNK = ("\x00", "x" * 3000, "<script>", "2024-13-45", "-1", "1.5", "'; drop table")


@pytest.mark.parametrize("key", ["action", "actor", "date_from", "date_to", "target_type"])
@pytest.mark.parametrize("junk", JUNK)
def test_a_junk_filter_is_a_form_error_not_a_server_error(client, project, people, log, key, junk):
    response = _page(client, people["reviewer"], project, **{key: junk})

    if response.status_code == 200:  # junk that is a fine value for this key ("-1" as an action)
        assert not response.context["form"].errors
    else:
        assert response.status_code == 400
        assert key in response.context["form"].errors
        assert response.context["page"] is None  # no rows shown under a filter that failed


def test_dates_out_of_order_and_a_junk_format_are_form_errors(client, project, people, log):
    reversed_dates = _page(
        client, people["reviewer"], project, date_from="2024-05-02", date_to="2024-05-01"
    )
    junk_format = _page(client, people["reviewer"], project, format="xlsx")

    assert reversed_dates.status_code == 400
    assert "date_to" in reversed_dates.context["form"].errors
    assert junk_format.status_code == 400
    assert "format" in junk_format.context["form"].errors


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York"])
@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_the_first_and_last_possible_days_and_a_junk_page_are_answered(
    client, project, people, log, settings, zone, day
):
    settings.TIME_ZONE = zone  # at year 1 or 9999 a shift to UTC would overflow

    page = _page(client, people["reviewer"], project, date_from=day, date_to=day, page="abc")
    export = _page(client, people["reviewer"], project, date_from=day, format="csv")

    assert page.status_code == 200
    assert _ids(page) == []  # nothing happened on that day
    assert export.status_code == 200
    lines = 1 + (4 if day.startswith("0001") else 0)  # the header, and all or none since then
    assert _body(export).count("\n") == lines


def test_an_export_with_a_junk_filter_is_a_plain_400(client, project, people, log):
    response = _page(client, people["reviewer"], project, format="csv", date_from="yesterday")

    assert response.status_code == 400
    assert "date_from" in response.content.decode()


# ------------------------------------------------------------------ exports


def _body(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def test_the_csv_export_keeps_a_formula_as_text(client, project, people, log):
    response = _page(client, people["admin"], project, format="csv", action="review.reject")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert len(rows) == 1
    assert rows[0]["reason"] == "'" + FORMULA
    assert rows[0]["action"] == "review.reject"
    assert rows[0]["ruleset_version"] == "2"
    assert json.loads(rows[0]["data"])["reason"] == FORMULA  # the JSON cell starts with "{"
    assert "ip_address" not in rows[0]  # the project's export leaves addresses out


def test_every_csv_cell_that_starts_like_a_formula_is_escaped(client, project, people):
    for start in ("=", "+", "-", "@", "\t", "\r"):
        audit_record(
            action="review.reject",
            actor=people["admin"],
            project=project,
            data={"reason": start + "1+1"},
        )

    rows = list(
        csv.DictReader(io.StringIO(_body(_page(client, people["admin"], project, format="csv"))))
    )

    assert sorted(r["reason"] for r in rows) == sorted(
        "'" + s + "1+1" for s in ("=", "+", "-", "@", "\t", "\r")
    )


def test_the_jsonl_export_has_one_parsable_object_per_event_filtered(
    client, project, people, log, elsewhere
):
    response = _page(client, people["reviewer"], project, format="jsonl", action="review.")

    lines = _body(response).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [log["approve"].pk, log["reject"].pk]
    assert records[1]["reason"] == FORMULA  # JSON is not a spreadsheet: the text as it was
    assert records[1]["data"] == {"reason": FORMULA, "ruleset_version": 2}
    assert records[1]["actor"] == "reviewer" and records[1]["project"] == project.name
    assert datetime.fromisoformat(records[0]["created_at"]) > datetime.fromisoformat(
        records[1]["created_at"]
    )


def test_the_platform_export_has_every_project_and_the_addresses(
    client, project, log, elsewhere, make_user
):
    response = _page(client, make_user("staffer", is_staff=True), format="csv")

    rows = list(csv.DictReader(io.StringIO(_body(response))))
    # Both projects, and events of no project (the staff member's own login).
    assert {r["project"] for r in rows} == {project.name, "Elsewhere", ""}
    assert "ip_address" in rows[0]


def test_the_page_speaks_chinese(client, project, people, log):
    from django.utils import translation

    client.force_login(people["reviewer"])
    try:
        response = client.get(
            reverse("audit:project", args=[project.pk]), headers={"accept-language": "zh-Hans"}
        )
    finally:
        translation.deactivate()

    body = response.content.decode()
    assert "审计日志" in body and "规则集" in body and "导出 JSONL" in body
