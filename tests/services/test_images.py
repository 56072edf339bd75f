"""Image generation through the real job runtime (in-process) on the tiny random pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.models.models import BaseModel
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Output
from workers.imaging.infotext import parse_infotext, read_png_parameters

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tiny_sd(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-sd")


def generate(project, member, **params):
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(
        project=project, kind="image.generate", params=params, created_by=member
    )
    outcome = execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    assert outcome == "succeeded", job.error
    return job


def test_txt2img_saves_pngs_with_a1111_infotext_into_the_gallery(project, member, tiny_sd):
    job = generate(
        project,
        member,
        model_id=tiny_sd.pk,
        prompt="a (red:1.2) cat",
        negative_prompt="blurry",
        steps=3,
        width=32,
        height=32,
        seed=1234,
        batch_size=2,
        sampler="Euler a",
    )

    outputs = list(Output.objects.filter(job=job).order_by("seed"))
    assert [o.seed for o in outputs] == [1234, 1235]
    png = Path(settings.MEDIA_ROOT) / outputs[0].file_path
    params = parse_infotext(read_png_parameters(png.read_bytes()))
    assert params["Prompt"] == "a (red:1.2) cat" and params["Negative prompt"] == "blurry"
    assert params["Seed"] == "1234" and params["Sampler"] == "Euler a" and params["Steps"] == "3"
    assert outputs[0].created_by == member and outputs[0].thumb_path
    assert job.events.filter(kind="preview").exists() or job.events.filter(kind="progress").exists()


def test_the_same_seed_gives_identical_image_bytes_and_the_second_job_finds_the_pipeline_warm(
    project, member, tiny_sd
):
    first = generate(
        project, member, model_id=tiny_sd.pk, prompt="a dog", steps=3, width=32, height=32, seed=7
    )
    second = generate(
        project, member, model_id=tiny_sd.pk, prompt="a dog", steps=3, width=32, height=32, seed=7
    )

    a, b = Output.objects.get(job=first), Output.objects.get(job=second)
    assert a.sha256 == b.sha256
    assert second.result["model_loaded"] is False


def test_img2img_from_a_gallery_image_and_an_unknown_sampler_is_refused(project, member, tiny_sd):
    base = generate(
        project, member, model_id=tiny_sd.pk, prompt="a dog", steps=3, width=32, height=32, seed=3
    )
    source = Output.objects.get(job=base)

    again = generate(
        project,
        member,
        model_id=tiny_sd.pk,
        prompt="a dog",
        steps=4,
        width=32,
        height=32,
        seed=3,
        init_output_id=source.pk,
        denoising_strength=0.5,
    )
    assert Output.objects.get(job=again).sha256 != source.sha256

    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=project,
            kind="image.generate",
            created_by=member,
            params={"model_id": tiny_sd.pk, "prompt": "x", "sampler": "Warp drive"},
        )
    assert "Unknown sampler" in info.value.errors["sampler"]
    assert Job.objects.filter(kind="image.generate").count() == 2


def test_the_form_starts_at_the_demo_models_native_size(client, project, member):
    ensure_builtin_rows()
    client.force_login(member)

    response = client.get(f"/projects/{project.pk}/images/")

    assert (
        response.context["defaults"]["width"] == 32 and response.context["defaults"]["height"] == 32
    )
