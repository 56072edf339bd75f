"""Models and image assets a project made (model craft) are that project's: other projects
neither see them offered nor get a job accepted that names them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.models.models import BaseModel
from apps.models.selectors import text_models
from apps.projects.models import Membership, Project


@pytest.fixture
def distilled(project, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    return BaseModel.objects.create(
        name="student of project A",
        kind="text",
        source="folder",
        reference=str(tmp_path / "student"),
        path=str(tmp_path / "student"),
        project=project,
    )


def test_a_projects_own_model_is_offered_and_accepted_only_there(
    client, project, member, make_user, distilled
):
    other = Project.objects.create(name="Other")
    stranger = make_user("member-of-other")
    Membership.objects.create(project=other, user=stranger, role="member")

    assert distilled in text_models(project.pk)
    assert distilled not in text_models(other.pk)

    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=other,
            kind="textgen",
            created_by=stranger,
            params={"base_model_id": distilled.pk, "prompt": "hi"},
        )
    assert info.value.errors["base_model_id"] == "No such text model"
    assert not Job.objects.filter(project=other).exists()

    client.force_login(stranger)
    page = client.get(reverse("playground:index", args=[other.pk])).content.decode()
    assert "student of project A" not in page
    client.force_login(member)
    page = client.get(reverse("playground:index", args=[project.pk])).content.decode()
    assert "student of project A" in page
