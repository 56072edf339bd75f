"""Reviewers' decisions as DPO data: approved and rejected text outputs of the same prompt become
(prompt, chosen, rejected) pairs, exported through the dataset import as a preference version."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEvent
from apps.datasets.models import Approval, Dataset
from apps.datasets.storage import media_path
from apps.outputs.models import Moderation, Output
from apps.review.exports import (
    LICENSE,
    MAX_PAIRS_PER_PROMPT,
    preference_export,
    preference_pairs,
)
from tests.services.test_datasets import do_import, write_csv

PROMPT = "How should I treat a mild fever?"


def _output(project, user, moderation, text, prompt=PROMPT, kind="text") -> Output:
    return Output.objects.create(
        project=project,
        kind=kind,
        prompt=prompt,
        text=text if kind == "text" else "",
        sha256=f"{Output.objects.count():064d}",
        moderation=moderation,
        created_by=user,
    )


@pytest.fixture
def decided(project, people):
    """One prompt with 2 approved and 1 rejected answers; a prompt with only an approved one;
    image outputs and undecided text outputs that must be left out."""
    member = people["member"]
    return {
        "good1": _output(project, member, Moderation.APPROVED, "Rest and drink water."),
        "bad": _output(project, member, Moderation.REJECTED, "Take ten aspirin at once."),
        # The same prompt with other whitespace: the same group.
        "good2": _output(
            project,
            member,
            Moderation.APPROVED,
            "Fluids, rest, paracetamol if needed.",
            prompt="  How should I treat\n a mild   fever? ",
        ),
        "alone": _output(project, member, Moderation.APPROVED, "Blue.", prompt="Sky colour?"),
        "flagged": _output(project, member, Moderation.FLAGGED, "Undecided."),
        "clean": _output(project, member, Moderation.CLEAN, "Never flagged."),
        "image_ok": _output(project, member, Moderation.APPROVED, "", kind="image"),
        "image_no": _output(project, member, Moderation.REJECTED, "", kind="image"),
    }


def test_every_approved_and_rejected_pair_of_a_prompt_is_found_in_order(project, decided):
    pairs = preference_pairs(project=project)

    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [
        (decided["good1"].pk, decided["bad"].pk),
        (decided["good2"].pk, decided["bad"].pk),
    ]
    assert pairs[0] == {
        "prompt": PROMPT,
        "chosen": "Rest and drink water.",
        "rejected": "Take ten aspirin at once.",
        "chosen_id": decided["good1"].pk,
        "rejected_id": decided["bad"].pk,
    }
    assert preference_pairs(project=project) == pairs  # deterministic


def test_image_outputs_and_other_projects_are_left_out(project, people, decided):
    from apps.projects.models import Project

    other = Project.objects.create(name="Elsewhere")
    _output(other, people["member"], Moderation.REJECTED, "Elsewhere's bad answer.")

    pairs = preference_pairs(project=project)

    ids = {p["chosen_id"] for p in pairs} | {p["rejected_id"] for p in pairs}
    assert ids == {decided["good1"].pk, decided["good2"].pk, decided["bad"].pk}


def test_pairs_per_prompt_are_capped(project, people):
    for i in range(5):
        _output(project, people["member"], Moderation.APPROVED, f"good {i}")
        _output(project, people["member"], Moderation.REJECTED, f"bad {i}")

    assert len(preference_pairs(project=project)) == MAX_PAIRS_PER_PROMPT


def test_the_export_is_a_preference_version_like_an_uploaded_one(project, people, decided):
    version = preference_export(
        project=project, actor=people["reviewer"], dataset_name="DPO from review"
    )

    dataset = version.dataset
    assert (dataset.name, dataset.schema, dataset.license) == (
        "DPO from review",
        "preference",
        LICENSE,
    )
    assert dataset.source == f"derived from reviewed outputs of project {project.name}"
    assert version.number == 1 and version.rows == 2
    assert version.approval == Approval.PENDING  # the same gate as any upload
    assert version.moderation_report["rows"] == 2  # and the same rules over its rows
    assert version.created_by == people["reviewer"]
    event = AuditEvent.objects.get(action="review.preference_export")
    assert event.target_id == str(version.pk)
    assert event.data["pairs"] == 2 and event.data["prompts"] == 1


def test_the_exported_file_validates_as_preference_and_reads_like_training_data(
    project, people, decided, tmp_path
):
    from workers.data.canonical import DEFAULT_TEMPLATES, iter_split, render_template
    from workers.data.importer import import_file

    version = preference_export(project=project, actor=people["reviewer"], dataset_name="DPO")
    path = media_path(version.storage_path)

    again = import_file(path, "data.jsonl", out_dir=tmp_path / "again")
    assert (again.schema, again.format, again.rows, again.sha256) == (
        "preference",
        "preference",
        2,
        version.sha256,
    )
    # The fine-tune runner's reader (apps/finetunes/runners.py): the split, then the template.
    rows = list(iter_split(path, "train", seed=version.split_seed, fraction=0.0))
    assert [set(r) for r in rows] == [{"prompt", "chosen", "rejected"}] * 2
    text = render_template(DEFAULT_TEMPLATES["preference"], rows[0])
    assert PROMPT in text and "Rest and drink water." in text


def test_a_second_export_adds_a_version_and_the_same_decisions_give_the_same_one(
    project, people, decided
):
    first = preference_export(project=project, actor=people["reviewer"], dataset_name="DPO")
    same = preference_export(project=project, actor=people["reviewer"], dataset_name="DPO")
    _output(project, people["member"], Moderation.REJECTED, "Ignore it for a week.")

    second = preference_export(project=project, actor=people["reviewer"], dataset_name=" DPO ")

    assert same.pk == first.pk
    assert second.dataset_id == first.dataset_id
    assert (second.number, second.rows) == (2, 4)
    assert Dataset.objects.filter(project=project).count() == 1


def test_no_pairs_is_refused_and_nothing_is_made(project, people):
    _output(project, people["member"], Moderation.APPROVED, "Only approved answers.")

    with pytest.raises(ValidationError, match="No preference pairs"):
        preference_export(project=project, actor=people["reviewer"], dataset_name="DPO")

    assert not Dataset.objects.filter(project=project).exists()
    assert not AuditEvent.objects.filter(action="review.preference_export").exists()


def test_a_name_taken_by_a_dataset_of_another_schema_is_refused(project, people, decided, tmp_path):
    do_import(project, people["member"], write_csv(tmp_path / "qa.csv", [("q?", "a.")]), name="QA")

    with pytest.raises(ValidationError) as refused:
        preference_export(project=project, actor=people["reviewer"], dataset_name="QA")

    assert "dataset_name" in refused.value.message_dict
    assert Dataset.objects.get(name="QA").versions.count() == 1


def test_an_empty_name_is_refused(project, people, decided):
    with pytest.raises(ValidationError) as refused:
        preference_export(project=project, actor=people["reviewer"], dataset_name="  ")

    assert "dataset_name" in refused.value.message_dict


def test_the_version_records_the_decisions_it_came_from(project, people):
    from datetime import timedelta

    from apps.finetunes.lineage import build_lineage
    from apps.models.models import BaseModel
    from apps.projects.selectors import ProjectAccess
    from apps.review.models import ReviewDecision
    from apps.review.services import output_decide

    member, reviewer = people["member"], people["reviewer"]
    good = _output(project, member, Moderation.FLAGGED, "Rest and drink water.")
    bad = _output(project, member, Moderation.FLAGGED, "Take ten aspirin at once.")
    lone = _output(project, member, Moderation.FLAGGED, "Blue.", prompt="Sky colour?")
    access = ProjectAccess(project=project, role="reviewer")
    for output, approve in ((good, True), (bad, False), (lone, True)):
        output_decide(
            access=access, actor=reviewer, output_id=output.pk, approve=approve, reason="no"
        )
    # The unpaired decision is the newest: it is not in the pairs, so not in the record.
    newest_used = ReviewDecision.objects.get(output=bad).decided_at
    ReviewDecision.objects.filter(output=lone).update(decided_at=newest_used + timedelta(hours=1))
    ReviewDecision.objects.filter(output=good).update(decided_at=newest_used - timedelta(hours=1))

    version = preference_export(project=project, actor=reviewer, dataset_name="DPO")

    version.refresh_from_db()
    assert version.operation_params["review"] == {
        "outputs": sorted([good.pk, bad.pk]),
        "approved": 1,
        "rejected": 1,
        "decided_until": newest_used.isoformat(),
    }
    # The same decisions give the same version, its record unchanged; lineage reads it as is.
    assert preference_export(project=project, actor=reviewer, dataset_name="DPO").pk == version.pk
    base = BaseModel.objects.create(name="tiny", source="folder")
    lineage = build_lineage(base=base, versions=[version], job_id=None)
    assert lineage["review"] == version.operation_params["review"]


def test_outputs_decided_without_a_decision_row_are_recorded_with_no_time(project, people, decided):
    version = preference_export(project=project, actor=people["reviewer"], dataset_name="DPO")

    version.refresh_from_db()
    review = version.operation_params["review"]
    assert review["outputs"] == sorted(
        [decided["good1"].pk, decided["good2"].pk, decided["bad"].pk]
    )
    assert (review["approved"], review["rejected"], review["decided_until"]) == (2, 1, None)
