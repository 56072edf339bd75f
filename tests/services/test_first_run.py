"""First steps: a new project's dashboard says what comes first (a dataset, a fine-tune, a try in
the playground), ticks each as the project gets there and goes once all are done; the project
list tells someone new what to try first and where the demo logins come from (issue 19)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.urls import reverse

from apps.datasets.services import dataset_import
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from apps.projects.models import Membership, Project
from tests.factories import make_output


def dashboard(client, project, user):
    client.force_login(user)
    response = client.get(reverse("projects:dashboard", args=[project.pk]))
    assert response.status_code == 200
    return response.content.decode()


def steps(page: str) -> dict[str, bool]:
    """The guide's steps as the page shows them: key -> ticked."""
    return {
        key: done == "true"
        for key, done in re.findall(r'data-step="(\w+)" data-done="(true|false)"', page)
    }


def add_dataset(project, user, tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nWhat is BP?,Blood pressure.\n", encoding="utf-8")
    dataset_import(
        project=project,
        actor=user,
        upload_path=path,
        filename="qa.csv",
        name="QA",
        license="CC0-1.0",
        source="tests",
    )


def add_adapter(project):
    ensure_builtin_rows()
    Adapter.objects.create(
        project=project,
        name="qa-lora",
        base_model=BaseModel.objects.get(reference="tiny-llama"),
        storage_path=f"adapters/{project.pk}/0/adapter",
    )


def test_a_new_project_guides_a_member_to_upload_fine_tune_and_try(client, project, people):
    page = dashboard(client, project, people["member"])
    assert steps(page) == {"dataset": False, "finetune": False, "generate": False}
    assert "Where to begin" in page
    for url in (
        reverse("datasets:upload", args=[project.pk]),
        reverse("finetunes:new", args=[project.pk]),
        reverse("playground:index", args=[project.pk]),
    ):
        assert f'href="{url}"' in page


def test_each_step_is_ticked_when_done_and_the_guide_goes_when_all_are(
    client, project, people, tmp_path
):
    member = people["member"]
    add_dataset(project, member, tmp_path)
    assert steps(dashboard(client, project, member)) == {
        "dataset": True,
        "finetune": False,
        "generate": False,
    }
    add_adapter(project)
    assert steps(dashboard(client, project, member)) == {
        "dataset": True,
        "finetune": True,
        "generate": False,
    }
    make_output(project, member, text="hello", prompt="hi")
    page = dashboard(client, project, member)
    assert steps(page) == {}
    assert 'id="first-steps"' not in page


def test_another_projects_work_does_not_tick_this_ones_steps(client, project, people, tmp_path):
    other = Project.objects.create(name="Other")
    Membership.objects.create(project=other, user=people["member"], role="member")
    add_dataset(other, people["member"], tmp_path)
    make_output(other, people["member"], text="x")
    assert not any(steps(dashboard(client, project, people["member"])).values())


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_roles_that_cannot_launch_see_where_things_stand_not_what_to_start(
    client, project, people, role
):
    page = dashboard(client, project, people[role])
    assert steps(page) == {"dataset": False, "finetune": False, "generate": False}
    assert "This project is just starting" in page
    assert "No dataset yet: members and admins upload them." in page
    assert f'href="{reverse("datasets:upload", args=[project.pk])}"' not in page
    assert f'href="{reverse("finetunes:new", args=[project.pk])}"' not in page
    assert 'id="ask-a-member"' in page and "ask a project admin for the member role" in page


def test_a_reviewer_is_pointed_to_the_review_inbox(client, project, people):
    page = dashboard(client, project, people["reviewer"])
    assert f'href="{reverse("review:inbox")}"' in page


# ------------------------------------------------------------------ the project list


def project_list(client, user):
    client.force_login(user)
    response = client.get(reverse("projects:list"))
    assert response.status_code == 200
    return response.content.decode()


def test_someone_in_no_project_is_told_how_to_begin(client, make_user):
    page = project_list(client, make_user("newcomer"))
    assert "New here? Try this first" in page


def test_someone_in_one_project_is_told_to_open_it_and_start_the_diagnostics(
    client, project, people
):
    page = project_list(client, people["member"])
    assert 'id="first-run"' in page
    assert "GPU worker diagnostics" in page


def test_the_guidance_goes_once_a_user_has_several_projects(client, project, people):
    for name in ("Second", "Third"):
        other = Project.objects.create(name=name)
        Membership.objects.create(project=other, user=people["member"], role="member")
    assert 'id="first-run"' not in project_list(client, people["member"])


@pytest.fixture
def demo_logins():
    path = settings.VAR_DIR / "demo-logins.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("admin secret-admin-pw\n")
    yield path
    path.unlink()


def test_a_platform_admin_is_told_where_the_demo_logins_are_kept(client, make_user, demo_logins):
    page = project_list(client, make_user("root", is_staff=True))
    assert 'id="demo-logins"' in page
    assert "make run" in page and str(demo_logins) in page
    assert "secret-admin-pw" not in page


def test_others_hear_of_the_demo_logins_but_not_where_the_file_is(
    client, project, people, demo_logins
):
    page = project_list(client, people["member"])
    assert 'id="demo-logins"' in page
    assert str(demo_logins) not in page and "secret-admin-pw" not in page


def test_without_demo_data_there_is_no_word_of_demo_logins(client, project, people):
    assert not (settings.VAR_DIR / "demo-logins.txt").exists()
    assert 'id="demo-logins"' not in project_list(client, people["member"])


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_someone_who_cannot_launch_is_not_told_to_start_a_job(client, project, people, role):
    page = project_list(client, people[role])
    assert 'id="first-run"' in page
    assert "GPU worker diagnostics" not in page
