"""Galleries: permissioned, filterable, and fast at 10,000 outputs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.models.models import BaseModel
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Collection, Output


def make_outputs(project, user, n: int, **fields) -> None:
    ensure_builtin_rows()
    model = BaseModel.objects.first()
    Output.objects.bulk_create(
        [
            Output(
                project=project,
                created_by=user,
                prompt=f"prompt {i} about cats" if i % 2 else f"prompt {i}",
                text=f"answer {i}",
                sha256=f"{i:064x}",
                base_model=model,
                **{"kind": "text", **fields},
            )
            for i in range(n)
        ]
    )


def gallery_url(project, **query) -> str:
    from urllib.parse import urlencode

    return reverse("galleries:index", args=[project.pk]) + ("?" + urlencode(query) if query else "")


def test_a_stranger_gets_404_for_the_gallery_and_for_an_output(db, client, project, people):
    make_outputs(project, people["member"], 1)
    client.force_login(people["outsider"])

    assert client.get(gallery_url(project)).status_code == 404
    assert (
        client.get(
            reverse("galleries:output", args=[project.pk, Output.objects.get().pk])
        ).status_code
        == 404
    )


def test_a_flagged_output_is_hidden_from_other_members_but_not_from_its_author_or_reviewers(
    db, client, project, people
):
    make_outputs(project, people["member"], 1, moderation="flagged")
    flagged = Output.objects.get()
    detail = reverse("galleries:output", args=[project.pk, flagged.pk])

    for who, visible in (("viewer", False), ("member", True), ("reviewer", True), ("admin", True)):
        client.force_login(people[who])
        page = client.get(gallery_url(project)).content.decode()
        assert (detail in page) is visible, who
        assert client.get(detail).status_code == (200 if visible else 404), who


def test_10000_outputs_list_with_a_constant_number_of_queries(db, client, project, people):
    make_outputs(project, people["member"], 100)
    client.force_login(people["viewer"])
    with CaptureQueriesContext(connection) as small:
        assert client.get(gallery_url(project)).status_code == 200
    make_outputs(project, people["member"], 9900)

    with CaptureQueriesContext(connection) as large:
        response = client.get(gallery_url(project, page=3))

    assert response.status_code == 200 and Output.objects.count() == 10000
    assert len(large.captured_queries) == len(small.captured_queries), [
        q["sql"] for q in large.captured_queries
    ]


def test_search_and_filters_narrow_the_gallery(db, client, project, people):
    make_outputs(project, people["member"], 10)
    make_outputs(project, people["admin"], 3)
    client.force_login(people["viewer"])

    cats = client.get(gallery_url(project, q="cats")).context["page"].paginator.count
    by_admin = client.get(gallery_url(project, author="admin")).context["page"].paginator.count

    assert cats == 5 + 1  # odd-numbered prompts of both batches mention cats
    assert by_admin == 3


def test_only_the_author_or_an_admin_can_delete(db, client, project, people):
    make_outputs(project, people["member"], 2)
    first, second = Output.objects.order_by("pk")
    client.force_login(people["reviewer"])
    assert client.post(reverse("galleries:delete", args=[project.pk, first.pk])).status_code == 403
    client.force_login(people["member"])
    assert client.post(reverse("galleries:delete", args=[project.pk, first.pk])).status_code == 302
    client.force_login(people["admin"])
    assert client.post(reverse("galleries:delete", args=[project.pk, second.pk])).status_code == 302
    assert Output.objects.count() == 0


def test_members_curate_boards(db, client, project, people):
    make_outputs(project, people["member"], 3)
    client.force_login(people["member"])
    client.post(reverse("galleries:collection_create", args=[project.pk]), {"name": "Best"})
    board = Collection.objects.get(name="Best")
    output = Output.objects.first()

    client.post(
        reverse("galleries:collection_toggle", args=[project.pk, output.pk]),
        {"collection": board.pk},
    )

    assert list(board.outputs.all()) == [output]
    listed = client.get(gallery_url(project, collection=board.pk)).context["page"].paginator.count
    assert listed == 1


@pytest.mark.parametrize("who", ["viewer", "reviewer"])
def test_viewers_and_reviewers_cannot_make_boards(db, client, project, people, who):
    client.force_login(people[who])
    assert (
        client.post(
            reverse("galleries:collection_create", args=[project.pk]), {"name": "X"}
        ).status_code
        == 403
    )
    assert not Collection.objects.exists()


def test_deleting_one_of_two_outputs_with_the_same_image_keeps_the_shared_file(
    transactional_db, client, project, people, settings
):
    from pathlib import Path

    from PIL import Image

    rel = f"outputs/{project.pk}/{'a' * 64}.png"
    path = Path(settings.MEDIA_ROOT) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    make_outputs(project, people["member"], 2, kind="image", file_path=rel, thumb_path=rel)
    first, second = Output.objects.order_by("pk")
    client.force_login(people["member"])

    client.post(reverse("galleries:delete", args=[project.pk, first.pk]))
    assert path.exists()  # the same seed and settings made the same bytes: one file, two outputs
    assert (
        client.get(reverse("galleries:file", args=[project.pk, second.pk, "image"])).status_code
        == 200
    )
    client.post(reverse("galleries:delete", args=[project.pk, second.pk]))
    assert not path.exists()
