"""Moderation and review: rules flag outputs as they are made, reviewers decide once, every
decision and rule change is audited, blocked prompts never become jobs."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.moderation.models import Flag, RuleSetVersion
from apps.moderation.services import ruleset_current, ruleset_save
from apps.outputs.models import Moderation, Output
from apps.outputs.services import output_create
from apps.projects.selectors import project_access
from apps.review.models import ReviewDecision
from apps.review.services import AlreadyDecided, output_decide

CUSTOM_RULES = [
    {"kind": "keyword", "pattern": "zorblax", "category": "custom", "severity": "flag"},
    {"kind": "keyword", "pattern": "forbidden-thing", "category": "illicit", "severity": "block"},
    {"kind": "regex", "pattern": r"gr[ae]+y\s+goo", "category": "violence", "severity": "flag"},
    {"kind": "keyword", "pattern": "违禁词", "category": "custom", "severity": "flag"},
]


@pytest.fixture
def rules(project, people):
    ruleset_current(project.pk)
    return ruleset_save(project=project, rows=CUSTOM_RULES, actor=people["admin"], comment="t")


def make_output(project, author, text: str, prompt: str = "a prompt") -> Output:
    return output_create(
        project_id=project.pk,
        kind="text",
        sha256="0" * 64,
        created_by_id=author.pk,
        text=text,
        prompt=prompt,
    )


def access(project, user):
    return project_access(user=user, project_id=project.pk)


# -- flagging at output_create -----------------------------------------------------------------


def test_an_output_matching_a_rule_is_flagged_with_its_spans_and_the_rule_version(
    db, project, people, rules
):
    out = make_output(project, people["member"], "Beware: the 违禁词 and GRAY   goo here.")
    assert out.moderation == Moderation.FLAGGED
    flag = Flag.objects.get(output=out)
    assert flag.ruleset_version == rules.number
    assert set(flag.categories) == {"custom", "violence"}
    spans = {(h["field"], out.text[h["start"] : h["end"]]) for h in flag.hits}
    assert ("text", "违禁词") in spans and ("text", "GRAY   goo") in spans


def test_a_clean_output_stays_clean_and_has_no_flag(db, project, people, rules):
    out = make_output(project, people["member"], "A kind answer about classrooms.")
    assert out.moderation == Moderation.CLEAN
    assert not Flag.objects.filter(output=out).exists()


def test_the_prompt_of_an_output_is_checked_too(db, project, people, rules):
    out = make_output(project, people["member"], "fine text", prompt="tell me about zorblax")
    assert out.moderation == Moderation.FLAGGED
    assert Flag.objects.get(output=out).hits[0]["field"] == "prompt"


def fake_classifier(*, kind, text, image_path):
    return [{"category": "sexual", "severity": "flag", "score": 0.97}] if "beach" in text else []


@override_settings(
    ATELIER={
        **__import__("django.conf").conf.settings.ATELIER,
        "MODERATION_CLASSIFIERS": ["tests.services.test_review.fake_classifier"],
    }
)
def test_an_installed_classifier_flags_what_the_rules_do_not(db, project, people, rules):
    out = make_output(project, people["member"], "a day at the beach")
    assert out.moderation == Moderation.FLAGGED
    assert Flag.objects.get(output=out).categories == ["sexual"]


def test_classifiers_are_off_by_default(db, project, people, rules):
    assert make_output(project, people["member"], "a day at the beach").moderation == "clean"


# -- decisions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["reviewer", "admin"])
@pytest.mark.parametrize("approve", [True, False])
def test_reviewers_and_admins_decide_once_and_the_audit_has_one_entry(
    db, project, people, rules, who, approve
):
    out = make_output(project, people["member"], "zorblax")
    decision = output_decide(
        access=access(project, people[who]),
        actor=people[who],
        output_id=out.pk,
        approve=approve,
        reason="checked by hand",
    )
    out.refresh_from_db()
    assert out.moderation == (Moderation.APPROVED if approve else Moderation.REJECTED)
    assert decision.decided_by == people[who] and decision.ruleset_version == rules.number
    assert decision.categories == ["custom"]
    with pytest.raises(AlreadyDecided):
        output_decide(
            access=access(project, people[who]),
            actor=people[who],
            output_id=out.pk,
            approve=not approve,
            reason="changed my mind",
        )
    entries = AuditEvent.objects.filter(action__startswith="review.", target_id=str(out.pk))
    assert entries.count() == 1
    assert entries.get().data["reason"] == "checked by hand"
    out.refresh_from_db()
    assert out.moderation == (Moderation.APPROVED if approve else Moderation.REJECTED)


def test_an_author_can_never_decide_on_their_own_output(db, project, people, rules):
    out = make_output(project, people["reviewer"], "zorblax")
    with pytest.raises(ValidationError, match="yours"):
        output_decide(
            access=access(project, people["reviewer"]),
            actor=people["reviewer"],
            output_id=out.pk,
            approve=True,
            reason="",
        )
    out.refresh_from_db()
    assert out.moderation == Moderation.FLAGGED
    assert not AuditEvent.objects.filter(action__startswith="review.").exists()


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_members_and_viewers_cannot_decide(db, project, people, rules, who):
    out = make_output(project, people["admin"], "zorblax")
    with pytest.raises(PermissionDenied):
        output_decide(
            access=access(project, people[who]),
            actor=people[who],
            output_id=out.pk,
            approve=True,
            reason="x",
        )
    out.refresh_from_db()
    assert out.moderation == Moderation.FLAGGED


def test_rejecting_needs_a_reason_and_a_clean_output_is_not_awaiting_review(
    db, project, people, rules
):
    flagged = make_output(project, people["member"], "zorblax")
    with pytest.raises(ValidationError, match="reason"):
        output_decide(
            access=access(project, people["reviewer"]),
            actor=people["reviewer"],
            output_id=flagged.pk,
            approve=False,
            reason="  ",
        )
    clean = make_output(project, people["member"], "hello")
    with pytest.raises(AlreadyDecided):
        output_decide(
            access=access(project, people["reviewer"]),
            actor=people["reviewer"],
            output_id=clean.pk,
            approve=True,
            reason="",
        )


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_deciding_at_once_one_wins(project, people, make_user):
    from apps.projects.models import Membership

    ruleset_save(project=project, rows=CUSTOM_RULES, actor=people["admin"])
    second = make_user("reviewer2")
    Membership.objects.create(project=project, user=second, role="reviewer")
    out = make_output(project, people["member"], "zorblax")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(user, approve):
        try:
            barrier.wait(timeout=30)
            output_decide(
                access=access(project, user),
                actor=user,
                output_id=out.pk,
                approve=approve,
                reason="race",
            )
            outcomes.append("won")
        except AlreadyDecided:
            outcomes.append("lost")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(people["reviewer"], True)),
        threading.Thread(target=decide, args=(second, False)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost", "won"]
    assert ReviewDecision.objects.filter(output=out).count() == 1
    assert AuditEvent.objects.filter(action__startswith="review.").count() == 1
    out.refresh_from_db()
    assert out.moderation == ReviewDecision.objects.get(output=out).decision


# -- rule sets -----------------------------------------------------------------------------------


def test_a_project_starts_with_the_default_rules_in_chinese_and_english(db, project):
    version = ruleset_current(project.pk)
    assert version.number == 1
    patterns = " ".join(r["pattern"] for r in version.rules)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in patterns)
    assert any(ch.isascii() and ch.isalpha() for ch in patterns)


def test_an_invalid_regex_is_refused_with_its_position_and_nothing_is_saved(
    db, client, project, people
):
    before = ruleset_current(project.pk).number
    client.force_login(people["admin"])
    url = reverse("review:rules", args=[project.pk])
    response = client.post(
        url,
        {
            "count": 2,
            "r0-kind": "keyword",
            "r0-pattern": "fine",
            "r0-category": "custom",
            "r0-severity": "flag",
            "r1-kind": "regex",
            "r1-pattern": "abc(de",
            "r1-category": "custom",
            "r1-severity": "flag",
            "action": "save",
        },
    )
    assert response.status_code == 400
    assert "position 3" in response.content.decode()
    assert RuleSetVersion.objects.filter(project=project).count() == before


def test_admins_save_versions_reviewers_only_read_and_the_change_is_audited(
    db, client, project, people
):
    ruleset_current(project.pk)
    client.force_login(people["reviewer"])
    url = reverse("review:rules", args=[project.pk])
    assert client.get(url).status_code == 200
    post = {
        "count": 1,
        "r0-kind": "keyword",
        "r0-pattern": "zorblax",
        "r0-category": "custom",
        "r0-severity": "flag",
        "comment": "only this",
        "action": "save",
    }
    assert client.post(url, post).status_code == 403
    client.force_login(people["member"])
    assert client.get(url).status_code == 403
    client.force_login(people["outsider"])
    assert client.get(url).status_code == 404
    client.force_login(people["admin"])
    assert client.post(url, post).status_code == 302
    version = ruleset_current(project.pk)
    assert version.number == 2 and [r["pattern"] for r in version.rules] == ["zorblax"]
    change = AuditEvent.objects.get(action="moderation.rules.change")
    assert change.data["version"] == 2 and change.data["comment"] == "only this"
    assert change.actor == people["admin"]


def test_the_test_box_highlights_what_the_draft_rules_match(db, client, project, people):
    client.force_login(people["reviewer"])
    response = client.post(
        reverse("review:rules", args=[project.pk]),
        {
            "count": 1,
            "r0-kind": "regex",
            "r0-pattern": r"\d{3}-\d{4}",
            "r0-category": "pii",
            "r0-severity": "flag",
            "sample": "call 555-1234 now",
            "action": "test",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert ">555-1234</mark>" in html
    assert RuleSetVersion.objects.filter(project=project).count() == 1  # testing saves nothing


# -- the inbox -------------------------------------------------------------------------------------


def test_the_inbox_lists_flagged_outputs_for_reviewers_and_is_404_for_others(
    db, client, project, people, rules
):
    out = make_output(project, people["member"], "about zorblax")
    make_output(project, people["member"], "clean words")
    client.force_login(people["reviewer"])
    html = client.get(reverse("review:inbox")).content.decode()
    assert f'data-key="output:{out.pk}"' in html
    assert html.count('class="card rv-item') == 1
    assert ">zorblax</mark>" in html
    for who in ("member", "viewer", "outsider"):
        client.force_login(people[who])
        assert client.get(reverse("review:inbox")).status_code == 404


def test_bulk_decisions_from_the_inbox_report_each_item(db, client, project, people, rules):
    mine = make_output(project, people["reviewer"], "zorblax one")
    theirs = [make_output(project, people["member"], f"zorblax {i}") for i in range(2)]
    client.force_login(people["reviewer"])
    response = client.post(
        reverse("review:decide"),
        {
            "item": [f"output:{project.pk}:{o.pk}" for o in [mine, *theirs]],
            "decision": "reject",
            "reason": "not for us",
        },
        HTTP_ACCEPT="application/json",
    )
    results = {r["key"]: r for r in response.json()["results"]}
    assert not results[f"output:{mine.pk}"]["ok"]
    assert all(results[f"output:{o.pk}"]["ok"] for o in theirs)
    assert response.json()["count"] == 1  # the reviewer's own output still waits
    assert set(Output.objects.filter(moderation="rejected").values_list("pk", flat=True)) == {
        o.pk for o in theirs
    }


def test_the_author_sees_the_decision_in_the_jobs_history(db, project, people, rules):
    from tests.factories import make_job

    job = make_job(project, people["member"])
    out = output_create(
        project_id=project.pk,
        job_id=job.pk,
        kind="text",
        sha256="1" * 64,
        created_by_id=people["member"].pk,
        text="zorblax",
    )
    output_decide(
        access=access(project, people["reviewer"]),
        actor=people["reviewer"],
        output_id=out.pk,
        approve=False,
        reason="off-topic",
    )
    last = job.events.order_by("-seq").first()
    assert last.data["review"] == {
        "output_id": out.pk,
        "decision": "rejected",
        "reason": "off-topic",
    }
    assert "off-topic" in last.data["message"]


def test_the_author_sees_who_decided_and_why_on_the_output_page(db, client, project, people, rules):
    out = make_output(project, people["member"], "zorblax")
    client.force_login(people["member"])
    page = client.get(reverse("galleries:output", args=[project.pk, out.pk])).content.decode()
    assert "awaiting a reviewer" in page and "custom" in page
    output_decide(
        access=access(project, people["reviewer"]),
        actor=people["reviewer"],
        output_id=out.pk,
        approve=False,
        reason="not on brief",
    )
    page = client.get(reverse("galleries:output", args=[project.pk, out.pk])).content.decode()
    assert 'id="output-decision"' in page and "by reviewer" in page and "not on brief" in page


def test_reviewers_export_decisions_as_a_preference_dataset_from_the_inbox(
    db, client, project, people, rules
):
    for text, approve in (("good zorblax answer", True), ("bad zorblax answer", False)):
        out = make_output(project, people["member"], text, prompt="explain zorblax")
        output_decide(
            access=access(project, people["reviewer"]),
            actor=people["reviewer"],
            output_id=out.pk,
            approve=approve,
            reason="r",
        )
    client.force_login(people["member"])
    url = reverse("review:preference_export")
    assert client.post(url, {"project": project.pk}).status_code == 404
    client.force_login(people["reviewer"])
    response = client.post(url, {"project": project.pk, "dataset_name": "prefs"})
    assert response.status_code == 302
    from apps.datasets.models import DatasetVersion

    version = DatasetVersion.objects.get(dataset__name="prefs")
    assert version.dataset.schema == "preference" and version.rows == 1
    assert response.url == version.get_absolute_url()


def test_new_rules_get_ids_that_no_rule_of_the_set_has(db, project, people):
    from apps.moderation.services import clean_rules

    rows = [
        {"id": "r2", "kind": "keyword", "pattern": "alpha"},
        {"id": "default:7", "kind": "keyword", "pattern": "beta"},
        {"kind": "keyword", "pattern": "gamma"},
        {"id": "r2", "kind": "keyword", "pattern": "delta"},  # a pasted duplicate id
    ]
    assert [r["id"] for r in clean_rules(rows)] == ["r2", "default:7", "r3", "r4"]
