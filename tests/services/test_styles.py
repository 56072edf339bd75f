"""Saved styles: members save prompt snippets for the project; authors and admins change them;
everyone in the project sees them; strangers do not."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from apps.images.models import Style

pytestmark = pytest.mark.django_db


def styles_url(project) -> str:
    return reverse("images:styles", args=[project.pk])


def save(client, project, **data):
    return client.post(styles_url(project), data)


def test_a_member_saves_a_style_and_every_role_in_the_project_sees_it(client, project, people):
    client.force_login(people["member"])
    created = save(
        client,
        project,
        name="  ink   sketch ",
        prompt="{prompt}, ink sketch, monochrome",
        negative_prompt="color",
    )
    assert created.status_code == 201
    style = Style.objects.get()
    assert (style.name, style.created_by) == ("ink sketch", people["member"])

    for role in ("viewer", "reviewer", "admin"):
        client.force_login(people[role])
        listed = client.get(styles_url(project)).json()["styles"]
        assert [(s["name"], s["prompt"]) for s in listed] == [
            ("ink sketch", "{prompt}, ink sketch, monochrome")
        ]


def test_a_style_needs_a_unique_name_and_some_prompt(client, project, member):
    client.force_login(member)
    assert save(client, project, name="a", prompt="x").status_code == 201

    duplicate = save(client, project, name="a", prompt="y")
    empty = save(client, project, name="b", prompt=" ", negative_prompt="")
    nameless = save(client, project, name="", prompt="y")

    assert duplicate.status_code == 400 and "name" in duplicate.json()["error"]["fields"]
    assert "needs a prompt" in empty.json()["error"]["message"]
    assert "name" in nameless.json()["error"]["fields"]
    assert Style.objects.count() == 1


def test_only_the_author_or_an_admin_changes_or_deletes_a_style(client, project, people):
    style = Style.objects.create(project=project, name="s", prompt="x", created_by=people["member"])
    update = reverse("images:style_update", args=[project.pk, style.pk])
    delete = reverse("images:style_delete", args=[project.pk, style.pk])
    other = people["member"].__class__.objects.create_user("member2")
    from apps.projects.models import Membership

    Membership.objects.create(project=project, user=other, role="member")

    client.force_login(other)
    assert client.post(update, {"name": "t", "prompt": "y"}).status_code == 403
    assert client.post(delete).status_code == 403
    client.force_login(people["viewer"])
    assert client.post(delete).status_code == 403
    client.force_login(people["member"])
    assert client.post(update, {"name": "t", "prompt": "y"}).json()["name"] == "t"
    client.force_login(people["admin"])
    assert client.post(delete).status_code == 200
    assert not Style.objects.exists()


def test_strangers_and_other_projects_see_no_styles(client, project, people):
    from apps.projects.models import Project

    other = Project.objects.create(name="Other")
    Style.objects.create(project=other, name="theirs", prompt="x")
    theirs = Style.objects.get()

    client.force_login(people["outsider"])
    assert client.get(styles_url(project)).status_code == 404
    client.force_login(people["admin"])
    assert client.get(styles_url(project)).json()["styles"] == []
    foreign = reverse("images:style_delete", args=[project.pk, theirs.pk])
    assert client.post(foreign).status_code == 404
    assert Style.objects.filter(pk=theirs.pk).exists()


def test_the_partials_render_with_their_urls(project, rf):
    context = {"project": project, "can_launch": True, "reuse": {}, "defaults": {"mask_blur": 4}}
    styles = render_to_string("images/_styles.html", context)
    inpaint = render_to_string("images/_inpaint.html", context)
    assert styles_url(project) in styles and 'name="' not in styles.split("<script")[0]
    assert reverse("images:mask_upload", args=[project.pk]) in inpaint
    assert 'name="mask_id"' in inpaint and 'name="mask_blur"' in inpaint and 'value="4"' in inpaint
