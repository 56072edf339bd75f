"""The approval gate seen from the fine-tune form: an unapproved version is refused with a clear message."""

from __future__ import annotations

import pytest

from apps.datasets import services as dataset_services
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.models.models import BaseModel
from apps.models.services import ensure_builtin_rows


@pytest.fixture
def version(db, project, member, tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nWhat is BP?,Blood pressure.\nHi,Hello\n", encoding="utf-8")
    version, _ = dataset_services.dataset_import(
        project=project,
        actor=member,
        upload_path=path,
        filename=path.name,
        name="QA",
        license="CC0-1.0",
        source="tests",
    )
    return version


@pytest.fixture
def tiny(db):
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


def launch(project, member, version, tiny):
    return job_services.job_create(
        project=project,
        kind="finetune.lora",
        created_by=member,
        params={"base_model_id": tiny.pk, "dataset_version_id": version.pk, "max_steps": 2},
    )


def test_a_fine_tune_on_an_unapproved_version_is_refused_with_a_clear_message(
    project, member, version, tiny
):
    with pytest.raises(job_services.JobParamsError) as info:
        launch(project, member, version, tiny)

    assert "has not been approved yet" in info.value.errors["dataset_version_id"]
    assert Job.objects.filter(kind="finetune.lora").count() == 0


def test_an_approved_version_can_be_fine_tuned(project, people, version, tiny):
    dataset_services.version_set_pii_report(version=version, report={"counts": {}})
    version.refresh_from_db()
    dataset_services.version_decide(
        version=version, actor=people["reviewer"], role="reviewer", approve=True, comment="clean"
    )

    job = launch(project, people["member"], version, tiny)

    assert job.kind == "finetune.lora" and job.queue == "gpu"


def test_a_version_of_another_project_is_not_found(project, member, version, tiny, make_user):
    from apps.projects.models import Project

    other = Project.objects.create(name="Other")
    with pytest.raises(job_services.JobParamsError) as info:
        launch(other, member, version, tiny)
    assert info.value.errors["dataset_version_id"] == "No such dataset version in this project"
