"""Model lineage: an adapter's page shows what it was trained from (base, dataset versions, parent
and children, reviewers' decisions, job), strangers get 404, and the model card has a Lineage
section."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from apps.datasets.models import Dataset, DatasetVersion
from apps.finetunes.lineage import build_lineage
from apps.jobs.models import Job
from apps.models.models import Adapter, AdapterKind, BaseModel
from apps.projects.models import Project
from workers.ml.finetune.card import write_model_card


def _version(project, name: str, number: int = 1, **params) -> DatasetVersion:
    dataset, _ = Dataset.objects.get_or_create(
        project=project,
        name=name,
        defaults={"schema": "preference", "license": "CC-BY-4.0", "source": "tests"},
    )
    return DatasetVersion.objects.create(
        dataset=dataset,
        number=number,
        sha256=f"{name}{number}".ljust(64, "0"),
        rows=12,
        storage_path=f"datasets/{project.pk}/{name}{number}",
        operation_params=params,
    )


@pytest.fixture
def world(project, people):
    """An SFT adapter (published before lineage was recorded: lineage {}) and a DPO adapter
    trained from it on a preference version exported from 3 decisions."""
    base = BaseModel.objects.create(name="tiny-base", source="folder", status="ready")
    qa = _version(project, "clinic-qa")
    prefs = _version(
        project,
        "prefs",
        review={
            "outputs": [4, 7, 9],
            "approved": 2,
            "rejected": 1,
            "decided_until": "2025-05-01T10:00:00+00:00",
        },
    )
    sft_job = Job.objects.create(project=project, kind="finetune.lora", queue="gpu")
    dpo_job = Job.objects.create(project=project, kind="finetune.dpo", queue="gpu")
    sft = Adapter.objects.create(
        project=project,
        name="sft-one",
        base_model=base,
        job=sft_job,
        dataset_version=qa,
        storage_path="a/adapter",
        metrics={"eval_loss_after": 1.234567891},
    )
    dpo = Adapter.objects.create(
        project=project,
        name="dpo-one",
        base_model=base,
        job=dpo_job,
        dataset_version=prefs,
        storage_path="b/adapter",
        kind=AdapterKind.DPO,
        parent=sft,
        lineage=build_lineage(base=base, versions=[prefs], parent=sft, job_id=dpo_job.pk),
    )
    return {"base": base, "qa": qa, "prefs": prefs, "sft": sft, "dpo": dpo, "dpo_job": dpo_job}


def _page(client, user, project, adapter) -> str:
    client.force_login(user)
    response = client.get(reverse("models:adapter", args=[project.pk, adapter.pk]))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _row(page: str, name: str) -> str:
    start = page.index(f'data-row="{name}"')
    return page[start : page.index("</tr>", start)]


def test_the_page_shows_base_dataset_parent_decisions_and_job(client, project, people, world):
    page = _page(client, people["viewer"], project, world["dpo"])

    assert "tiny-base" in _row(page, "base")
    assert world["prefs"].get_absolute_url() in _row(page, "datasets")
    assert "prefs v1" in _row(page, "datasets")
    parent = _row(page, "parent")
    assert reverse("models:adapter", args=[project.pk, world["sft"].pk]) in parent
    assert "sft-one" in parent
    review = _row(page, "review")
    assert "2 approved, 1 rejected" in review
    assert reverse("galleries:output", args=[project.pk, 7]) in review
    job = _row(page, "job")
    assert world["dpo_job"].get_absolute_url() in job
    assert "Preference-tuned (DPO)" in _row(page, "kind")
    assert 'id="lineage-not-recorded"' not in page


def test_an_adapter_published_before_lineage_is_built_from_its_own_fields(
    client, project, people, world
):
    page = _page(client, people["viewer"], project, world["sft"])

    assert 'id="lineage-not-recorded"' in page
    assert "tiny-base" in _row(page, "base")
    assert world["qa"].get_absolute_url() in _row(page, "datasets")
    assert world["sft"].job.get_absolute_url() in _row(page, "job")
    assert "the base model" in _row(page, "parent")
    # Its child links back, and its metrics are shown.
    assert reverse("models:adapter", args=[project.pk, world["dpo"].pk]) in _row(page, "children")
    assert "1.23457" in page


def test_the_models_list_links_each_adapter_to_its_page(client, project, people, world):
    client.force_login(people["viewer"])

    page = client.get(reverse("models:list", args=[project.pk])).content.decode()

    assert reverse("models:adapter", args=[project.pk, world["dpo"].pk]) in page
    assert reverse("models:adapter", args=[project.pk, world["sft"].pk]) in page


def test_a_non_member_gets_404(client, project, people, world):
    client.force_login(people["outsider"])

    response = client.get(reverse("models:adapter", args=[project.pk, world["dpo"].pk]))

    assert response.status_code == 404


def test_another_projects_adapter_is_not_found_through_this_project(client, project, people, world):
    other = Project.objects.create(name="Elsewhere")
    theirs = Adapter.objects.create(
        project=other, name="theirs", base_model=world["base"], storage_path="c/adapter"
    )
    client.force_login(people["viewer"])

    response = client.get(reverse("models:adapter", args=[project.pk, theirs.pk]))

    assert response.status_code == 404


# ---------------------------------------------------------------- the model card


def test_the_model_card_has_a_lineage_section(tmp_path, world):
    dpo = world["dpo"]

    card = write_model_card(
        tmp_path / "README.md",
        title="dpo-one",
        card_info={"base_model": "tiny-base", "job": dpo.job_id, "lineage": dpo.lineage},
        config={"beta": 0.1},
        metrics={},
        details={},
        template=None,
        kind="adapter",
    ).read_text()

    provenance, lineage = card.split("## Lineage")
    assert "**lineage**" not in provenance  # the dict is not dumped among the provenance items
    section = lineage.split("\n## ")[0]
    assert "**base model**: tiny-base" in section
    assert f"prefs v1 (12 rows, preference, sha256 {world['prefs'].sha256})" in section
    assert f"**parent adapter**: sft-one (#{world['sft'].pk}, sft)" in section
    assert "2 approved, 1 rejected, over 3 outputs" in section
    assert f"**job**: #{dpo.job_id}" in section


def test_a_card_without_lineage_has_no_lineage_section(tmp_path):
    card = write_model_card(
        tmp_path / "README.md",
        title="plain",
        card_info={"base_model": "tiny-base", "lineage": {}},
        config={},
        metrics={},
        details={},
        template=None,
        kind="adapter",
    ).read_text()

    assert "## Lineage" not in card and "**lineage**" not in card
