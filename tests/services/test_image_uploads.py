"""Inpainting masks from the browser: the upload (hostile files refused, nothing stored), the job's
checks, and an inpainting job that changes only the masked pixels of a gallery image."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image, ImageDraw

from apps.images.models import InpaintMask
from apps.jobs import services as job_services
from apps.models.models import BaseModel
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Output
from workers.imaging.infotext import parse_infotext, read_png_parameters


def encode(im: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt)
    return buffer.getvalue()


def square_mask(size=(32, 32), box=(10, 10, 21, 21), mode="L") -> Image.Image:
    mask = Image.new(mode, size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255 if mode == "L" else (255, 255, 255, 255))
    return mask


def upload(client, project, name: str, data: bytes):
    return client.post(
        reverse("images:mask_upload", args=[project.pk]),
        {"file": SimpleUploadedFile(name, data)},
    )


def media_files() -> list[str]:
    media = Path(settings.MEDIA_ROOT)
    return sorted(str(p) for p in media.rglob("*") if p.is_file()) if media.exists() else []


# ---------------------------------------------------------------- the upload


@pytest.mark.django_db
def test_a_painted_mask_is_stored_once_as_grayscale_and_named_by_its_content(
    client, project, member
):
    client.force_login(member)
    strokes = square_mask(mode="RGBA")  # white strokes on a transparent layer, as canvas draws

    first = upload(client, project, "mask.png", encode(strokes))
    again = upload(client, project, "mask-again.png", encode(strokes))

    assert first.status_code == 201 and again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    mask = InpaintMask.objects.get()
    assert (mask.width, mask.height, mask.created_by) == (32, 32, member)
    with Image.open(Path(settings.MEDIA_ROOT) / mask.file_path) as stored:
        assert stored.mode == "L" and stored.getbbox() == (10, 10, 22, 22)
    assert not Output.objects.exists()  # a mask is no gallery image


HOSTILE = {
    "empty.png": (b"", "empty"),
    "model.png": (pickle.dumps({"w": 1}), "not an image (a Python pickle"),
    "cut.png": (encode(Image.effect_noise((64, 64), 60).convert("L"))[:-300], "damaged PNG"),
    "mask.webp": (encode(square_mask(), "WEBP"), "WEBP images are not supported"),
    "huge.png": (encode(Image.new("1", (5000, 4000))), "the limit is 16,777,216"),
    "tall.png": (encode(Image.new("1", (4100, 8))), "larger than 4096 pixels on a side"),
    "blank.png": (encode(Image.new("L", (32, 32), 0)), "The mask is empty"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", HOSTILE)
def test_a_bad_mask_is_refused_with_its_reason_and_nothing_is_stored(client, project, member, name):
    client.force_login(member)
    data, reason = HOSTILE[name]
    before = media_files()

    response = upload(client, project, name, data)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not InpaintMask.objects.exists() and media_files() == before


@pytest.mark.django_db
def test_a_mask_bigger_than_10_mb_is_refused_before_it_is_read(client, project, member):
    client.force_login(member)
    response = upload(client, project, "big.png", b"\x89PNG" + bytes(10 * 1024 * 1024))
    assert response.status_code == 400 and "10 MB" in response.json()["error"]


@pytest.mark.django_db
def test_viewers_cannot_upload_masks_and_outsiders_do_not_see_the_project(client, project, people):
    client.force_login(people["viewer"])
    assert upload(client, project, "m.png", encode(square_mask())).status_code == 403
    client.force_login(people["outsider"])
    assert upload(client, project, "m.png", encode(square_mask())).status_code == 404
    assert not InpaintMask.objects.exists()


# ---------------------------------------------------------------- the job


@pytest.fixture
def tiny_sd(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-sd")


def run_job(project, member, **params):
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(
        project=project, kind="image.generate", params=params, created_by=member
    )
    outcome = execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    assert outcome == "succeeded", job.error
    return job


@pytest.mark.django_db(transaction=True)
def test_an_inpainting_job_changes_only_the_masked_pixels_of_a_gallery_image(
    client, project, member, tiny_sd
):
    base = run_job(
        project, member, model_id=tiny_sd.pk, prompt="a cat", steps=3, width=32, height=32, seed=9
    )
    source = Output.objects.get(job=base)
    client.force_login(member)
    mask_id = upload(client, project, "mask.png", encode(square_mask())).json()["id"]

    job = run_job(
        project,
        member,
        model_id=tiny_sd.pk,
        prompt="a dog",
        steps=4,
        width=32,
        height=32,
        seed=1,
        init_output_id=source.pk,
        denoising_strength=0.9,
        mask_id=mask_id,
        mask_blur=1,
    )

    result = Output.objects.get(job=job)
    root = Path(settings.MEDIA_ROOT)
    with Image.open(root / source.file_path) as a, Image.open(root / result.file_path) as b:
        diff = (np.asarray(a.convert("RGB"), dtype=int) != np.asarray(b.convert("RGB"))).any(-1)
    assert diff[12:20, 12:20].mean() > 0.9  # redrawn under the mask
    keep = np.ones((32, 32), dtype=bool)
    keep[7:25, 7:25] = False  # the mask (10..21) and 3 px of blur margin
    assert not diff[keep].any()
    assert result.params["mask_id"] == mask_id and result.params["mask_blur"] == 1
    infotext = parse_infotext(read_png_parameters((root / result.file_path).read_bytes()))
    assert infotext["Mask blur"] == "1" and infotext["Denoising strength"] == "0.9"


@pytest.mark.django_db
def test_an_inpainting_job_is_refused_without_init_image_or_with_another_projects_mask(
    project, member, tiny_sd, make_user
):
    from apps.projects.models import Project

    other = Project.objects.create(name="Other")
    foreign = InpaintMask.objects.create(
        project=other, sha256="0" * 64, file_path="x.png", width=32, height=32
    )
    source = Output.objects.create(
        project=project, kind="image", sha256="1" * 64, file_path="s.png", width=64, height=32
    )
    narrow = InpaintMask.objects.create(
        project=project, sha256="2" * 64, file_path="y.png", width=32, height=32
    )
    base = {"model_id": tiny_sd.pk, "prompt": "x", "width": 32, "height": 32}

    with pytest.raises(job_services.JobParamsError) as no_init:
        job_services.job_create(
            project=project,
            kind="image.generate",
            created_by=member,
            params={**base, "mask_id": narrow.pk},
        )
    with pytest.raises(job_services.JobParamsError) as stranger:
        job_services.job_create(
            project=project,
            kind="image.generate",
            created_by=member,
            params={**base, "mask_id": foreign.pk, "init_output_id": source.pk},
        )
    with pytest.raises(job_services.JobParamsError) as proportions:
        job_services.job_create(
            project=project,
            kind="image.generate",
            created_by=member,
            params={**base, "mask_id": narrow.pk, "init_output_id": source.pk},
        )

    assert "needs an init image" in str(no_init.value)
    assert stranger.value.errors["mask_id"] == f"No inpaint mask {foreign.pk} in this project"
    assert "the mask is 32x32 and the init image 64x32" in proportions.value.errors["mask_id"]
