"""Offers to start work go only to roles that may start it: a reviewer or a viewer is not offered
"Start a job" or "Reuse these parameters" that would lead to a form they cannot send (issue 19,
item 4); they get a short word on who can instead."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_output

LAUNCHERS = ("admin", "member")
WATCHERS = ("reviewer", "viewer")


def page(client, user, url) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("role", LAUNCHERS)
def test_roles_that_launch_are_offered_the_job_forms(client, project, people, role):
    html = page(client, people[role], reverse("projects:dashboard", args=[project.pk]))
    assert 'id="launch-title"' in html
    assert f'action="{reverse("jobs:launch", args=[project.pk])}"' in html
    assert 'id="ask-a-member"' not in html


@pytest.mark.parametrize("role", WATCHERS)
def test_roles_that_cannot_launch_get_no_job_forms_and_a_word_on_who_can(
    client, project, people, role
):
    html = page(client, people[role], reverse("projects:dashboard", args=[project.pk]))
    assert 'id="launch-title"' not in html
    assert reverse("jobs:launch", args=[project.pk]) not in html
    assert "ask a project admin for the member role" in html


@pytest.mark.parametrize("kind", ["text", "image"])
@pytest.mark.parametrize("role", LAUNCHERS + WATCHERS)
def test_reuse_these_parameters_is_offered_only_to_roles_that_launch(
    client, project, people, role, kind
):
    output = make_output(project, people["member"], kind=kind, text="t", prompt="a cat")
    html = page(client, people[role], reverse("galleries:output", args=[project.pk, output.pk]))
    assert ("Reuse these parameters" in html) == (role in LAUNCHERS)
