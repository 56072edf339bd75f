"""Galleries: permissioned, filterable, and fast at 10,000 outputs."""

from __future__ import annotations

import functools

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


# ---------------------------------------------------------------- hostile PNGs: PNG info and upload

MiB = 1024 * 1024
A1111_TEXT = (
    "a cat in a garden\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, Model: name"
)


def _chunk(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png(before_image: bytes = b"", after_image: bytes = b"") -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(buffer, format="PNG")
    png = buffer.getvalue()
    return png[:33] + before_image + png[33:-12] + after_image + png[-12:]  # after IHDR, IDAT


@functools.cache
def _deflated_zeros(n: int) -> bytes:
    import zlib

    z = zlib.compressobj(9)
    block = bytes(MiB)
    return b"".join(z.compress(block[: min(MiB, n - i)]) for i in range(0, n, MiB)) + z.flush()


def _ztxt(key: str, size: int) -> bytes:
    return _chunk(b"zTXt", key.encode() + b"\0\0" + _deflated_zeros(size))


BOMBS = ["many-ztxt.png", "ztxt-bomb.png", "itxt-bomb.png", "big-text.png", "bomb-after-image.png"]


@functools.cache
def _bombs() -> dict[str, tuple[bytes, str, str]]:
    """name -> (PNG, what PNG info answers, why an upload is refused); built on first use."""
    inflates = "PNG text chunk 'parameters' inflates past 1 MiB"
    eight = _deflated_zeros(8 * MiB)
    params = _chunk(b"tEXt", b"parameters\0" + A1111_TEXT.encode())
    itxt = _chunk(b"iTXt", b"parameters\0\1\0en\0\0" + _deflated_zeros(100 * MiB))
    return {
        # the attacker's 2 MB file: 255 chunks, each inflating to 8 MiB
        "many-ztxt.png": (
            _png(b"".join(_chunk(b"zTXt", b"k%d\0\0" % i + eight) for i in range(255))),
            "PNG has more than 64 text chunks",
            "PNG text chunk 'k0' inflates past 1 MiB",
        ),
        "ztxt-bomb.png": (_png(_ztxt("parameters", 100 * MiB)), inflates, inflates),
        "itxt-bomb.png": (_png(itxt), inflates, inflates),
        "big-text.png": (
            _png(_chunk(b"tEXt", b"parameters\0" + b"a" * (20 * MiB))),
            "PNG text chunk 'parameters' is larger than 1 MiB",
            "PNG text chunk 'parameters' is larger than 1 MiB",
        ),
        # PNG info reads the parameters before the image data; Pillow would inflate the late bomb
        "bomb-after-image.png": (
            _png(params, after_image=_ztxt("parameters", 100 * MiB)),
            "",
            inflates,
        ),
    }


def _post_file(client, url: str, name: str, data: bytes, **kwargs):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(url, {"file": SimpleUploadedFile(name, data, "image/png")}, **kwargs)


def _media_files() -> list[str]:
    from pathlib import Path

    from django.conf import settings

    media = Path(settings.MEDIA_ROOT)
    return sorted(str(p) for p in media.rglob("*") if p.is_file()) if media.exists() else []


def test_png_info_gives_a_viewer_the_parameters_of_an_a1111_png(db, client, project, people):
    client.force_login(people["viewer"])
    url = reverse("galleries:png_info", args=[project.pk])

    response = _post_file(
        client, url, "cat.png", _png(_chunk(b"tEXt", b"parameters\0" + A1111_TEXT.encode()))
    )

    assert response.status_code == 200
    body = response.json()
    assert body["parameters"] == A1111_TEXT
    assert (body["fields"]["seed"], body["fields"]["width"]) == (1234, 512)


@pytest.mark.parametrize("name", BOMBS)
def test_png_info_answers_a_text_bomb_with_400_and_what_is_wrong(db, client, project, people, name):
    data, message, _ = _bombs()[name]
    client.force_login(people["viewer"])

    response = _post_file(client, reverse("galleries:png_info", args=[project.pk]), name, data)

    if message:
        assert response.status_code == 400
        assert message in response.json()["error"]
    else:  # the bomb lies after the image data, where PNG info does not read
        assert response.status_code == 200
        assert response.json()["parameters"] == A1111_TEXT


@pytest.mark.parametrize("name", BOMBS)
def test_an_upload_with_a_text_bomb_is_refused_with_the_reason_and_stores_nothing(
    db, client, project, people, name
):
    import html

    from apps.audit.models import AuditEvent

    data, _, message = _bombs()[name]
    client.force_login(people["member"])
    before = (_media_files(), Output.objects.count(), AuditEvent.objects.count())

    response = _post_file(
        client, reverse("galleries:upload", args=[project.pk]), name, data, follow=True
    )

    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert f"{name}: {message}" in page
    assert (_media_files(), Output.objects.count(), AuditEvent.objects.count()) == before


def test_an_a1111_png_uploads_and_is_stored_without_its_text(db, client, project, people):
    from pathlib import Path

    from django.conf import settings
    from PIL import Image

    client.force_login(people["member"])
    data = _png(_chunk(b"tEXt", b"parameters\0" + A1111_TEXT.encode()))

    response = _post_file(client, reverse("galleries:upload", args=[project.pk]), "cat.png", data)

    output = Output.objects.get(params__uploaded="cat.png")
    assert response.url == reverse("galleries:output", args=[project.pk, output.pk])
    with Image.open(Path(settings.MEDIA_ROOT, output.file_path)) as img:
        assert "parameters" not in img.info
