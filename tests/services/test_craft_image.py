"""Image LoRA and textual-inversion training through the platform: the launch checks, the real job
runtime (in-process) on the tiny random pipeline, the registered asset used in an image job by
its tag or name, the launch pages and the download, and who may use them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from PIL import Image

from apps.datasets import services as dataset_services
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.models.models import BaseModel, ImageAsset
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Output
from workers.imaging.infotext import parse_infotext, read_png_parameters

TRAIN = {  # a few steps on the tiny random pipeline: seconds, and every part of a run
    "resolution": 32,
    "steps": 4,
    "batch_size": 2,
    "save_every": 2,
    "log_every": 2,
    "sample_prompts": "crate\na crate on grass",
    "sample_every": 2,
    "sample_steps": 2,
}


def image_zip(path: Path, n: int) -> Path:
    """`n` small PNGs, each with a caption file beside it (the platform's image-zip layout)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(n):
            png = io.BytesIO()
            Image.new("RGB", (24, 24), (20 * i, 120, 200 - 10 * i)).save(png, format="PNG")
            zf.writestr(f"crate-{i}.png", png.getvalue())
            zf.writestr(f"crate-{i}.txt", f"a wooden crate, view {i}")
    path.write_bytes(buffer.getvalue())
    return path


def import_images(project, actor, tmp_path, n=6, name="Crates"):
    version, _ = dataset_services.dataset_import(
        project=project,
        actor=actor,
        upload_path=image_zip(tmp_path / f"{name}.zip", n),
        filename=f"{name}.zip",
        name=name,
        license="CC0-1.0",
        source="tests",
    )
    return version


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny matrices: OpenMP threads only add contention on a busy 2-core machine.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_sd(db, tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-sd")


@pytest.fixture
def open_project(project):
    project.require_dataset_approval = False
    project.save(update_fields=["require_dataset_approval"])
    return project


@pytest.fixture
def crates(open_project, member, tmp_path):
    return import_images(open_project, member, tmp_path)


def run(project, user, kind, **params) -> Job:
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(project=project, kind=kind, params=params, created_by=user)
    outcome = execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    assert outcome == "succeeded", job.error
    return job


def infotext_of(output: Output) -> dict[str, str]:
    return parse_infotext(read_png_parameters(Path(settings.MEDIA_ROOT, output.file_path)))


# --------------------------------------------------------------------- through the job runtime


@pytest.mark.django_db(transaction=True)
def test_a_lora_job_registers_a_lora_that_an_image_job_uses_by_its_tag(
    open_project, member, tiny_sd, crates
):
    job = run(
        open_project,
        member,
        "craft.image_lora",
        base_model_id=tiny_sd.pk,
        dataset_version_id=crates.pk,
        name="crate-style",
        trigger_word="cr8",
        **TRAIN,
    )

    asset = ImageAsset.objects.get(kind="lora", name="crate-style")
    assert job.result["asset_id"] == asset.pk and job.result["usage"] == "<lora:crate-style:1>"
    assert Path(asset.path).is_file() and Path(asset.path).is_relative_to(settings.MEDIA_ROOT)
    assert asset.info["rank"] == 4 and asset.info["trained"]["project"] == open_project.pk
    assert asset.info["trained"]["dataset_version"]["sha256"] == crates.sha256
    assert asset.created_by == member and asset.license == "CC0-1.0"
    kinds = set(job.events.values_list("kind", flat=True))
    assert {"metrics", "preview", "artifact"} <= kinds
    assert job.events.filter(kind="preview").count() == 2  # steps 2 and 4

    image = run(
        open_project,
        member,
        "image.generate",
        model_id=tiny_sd.pk,
        prompt="cr8, a crate <lora:crate-style:0.8>",
        steps=2,
        width=32,
        height=32,
        seed=5,
    )
    params = infotext_of(Output.objects.get(job=image))
    assert params["Lora hashes"] == f"crate-style: {asset.short_hash}"


@pytest.mark.django_db(transaction=True)
def test_an_embedding_job_registers_an_embedding_that_an_image_job_uses_by_name(
    open_project, member, tiny_sd, crates
):
    job = run(
        open_project,
        member,
        "craft.textual_inversion",
        base_model_id=tiny_sd.pk,
        dataset_version_id=crates.pk,
        token="crate-ti",
        initializer="crate",
        num_vectors=2,
        **TRAIN,
    )

    asset = ImageAsset.objects.get(kind="embedding", name="crate-ti")
    assert job.result["usage"] == "crate-ti" and asset.info["vectors"] == 2

    image = run(
        open_project,
        member,
        "image.generate",
        model_id=tiny_sd.pk,
        prompt="a photo of crate-ti",
        steps=2,
        width=32,
        height=32,
        seed=5,
    )
    params = infotext_of(Output.objects.get(job=image))
    assert params["TI hashes"] == f"crate-ti: {asset.short_hash}"


# --------------------------------------------------------------------- launch checks


def test_the_checks_refuse_what_cannot_train_with_a_message_per_field(
    project, people, tiny_sd, tmp_path
):
    member = people["member"]
    pending = import_images(project, member, tmp_path, n=6, name="Pending")
    few = import_images(project, member, tmp_path, n=3, name="Few")
    text = tmp_path / "qa.csv"
    text.write_text("question,answer\nHi,Hello\n", encoding="utf-8")
    qa, _ = dataset_services.dataset_import(
        project=project, actor=member, upload_path=text, filename="qa.csv", name="QA",
        license="CC0-1.0", source="tests",
    )  # fmt: skip
    for version in (few, qa):
        dataset_services.version_set_pii_report(version=version, report={"counts": {}})
        version.refresh_from_db()
        dataset_services.version_decide(
            version=version, actor=people["reviewer"], role="reviewer", approve=True, comment="ok"
        )
    ImageAsset.objects.create(kind="lora", name="taken", path="/nowhere.safetensors")
    text_model = BaseModel.objects.get(reference="tiny-llama")

    def errors(kind, **params):
        with pytest.raises(job_services.JobParamsError) as info:
            job_services.job_create(project=project, kind=kind, params=params, created_by=member)
        return info.value.errors

    lora = {"base_model_id": tiny_sd.pk, "name": "fresh"}
    assert (
        "not been approved"
        in errors("craft.image_lora", dataset_version_id=pending.pk, **lora)["dataset_version_id"]
    )
    assert (
        "3 training images"
        in errors("craft.image_lora", dataset_version_id=few.pk, **lora)["dataset_version_id"]
    )
    assert (
        "image dataset with captions"
        in errors("craft.image_lora", dataset_version_id=qa.pk, **lora)["dataset_version_id"]
    )
    taken = errors(
        "craft.image_lora", dataset_version_id=few.pk, base_model_id=text_model.pk, name="taken"
    )
    assert taken["base_model_id"] == "No such image model" and "named taken exists" in taken["name"]
    embedding = {"dataset_version_id": few.pk, "base_model_id": tiny_sd.pk, "initializer": "box"}
    assert (
        "embedding name is required"
        in errors("craft.textual_inversion", token="two words", **embedding)["token"]
    )
    assert (
        "multiple of 8"
        in errors("craft.textual_inversion", token="box-ti", resolution=100, **embedding)[
            "resolution"
        ]
    )
    assert not Job.objects.filter(kind__startswith="craft.").exists()


def test_a_second_job_may_not_claim_a_name_a_queued_job_will_register(
    open_project, member, tiny_sd, crates
):
    params = {"base_model_id": tiny_sd.pk, "dataset_version_id": crates.pk, "name": "once"}
    job_services.job_create(
        project=open_project, kind="craft.image_lora", params=params, created_by=member
    )
    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=open_project, kind="craft.image_lora", params=params, created_by=member
        )
    assert "Another training job" in info.value.errors["name"]


# --------------------------------------------------------------------- pages


def test_members_see_both_forms_and_launch_a_job_from_them(
    client, open_project, member, tiny_sd, crates
):
    client.force_login(member)
    for name in ("craft:image_lora", "craft:image_embedding"):
        page = client.get(reverse(name, args=[open_project.pk]))
        assert page.status_code == 200
        assert f'value="{crates.pk}"' in page.content.decode()
        fields = {f["name"] for f in page.context["training_fields"]}
        assert {"steps", "learning_rate", "resolution"} <= fields

    response = client.post(
        reverse("craft:image_lora", args=[open_project.pk]),
        {
            "base_model_id": tiny_sd.pk,
            "dataset_version_id": crates.pk,
            "name": "from-form",
            "trigger_word": "cr8",
            "rank": "8",
            "random_flip": "false",
            "sample_prompts": "cr8, a crate\ncr8 on grass",
        },
    )
    job = Job.objects.get(kind="craft.image_lora")
    assert response.status_code == 302 and response.url == job.get_absolute_url()
    assert job.params["rank"] == 8 and job.params["random_flip"] is False
    assert job.params["sample_prompts"] == "cr8, a crate\ncr8 on grass"


def test_a_refused_launch_shows_the_reason_and_starts_nothing(
    client, open_project, member, tiny_sd, crates
):
    client.force_login(member)
    response = client.post(
        reverse("craft:image_embedding", args=[open_project.pk]),
        {"base_model_id": tiny_sd.pk, "dataset_version_id": crates.pk, "token": "x y"},
    )
    assert response.status_code == 400
    assert "embedding name is required" in response.context["errors"]["token"]
    assert not Job.objects.exists()


def test_outsiders_get_404_and_viewers_may_not_launch(client, project, people, tiny_sd):
    urls = [reverse(n, args=[project.pk]) for n in ("craft:image_lora", "craft:image_embedding")]
    client.force_login(people["outsider"])
    for url in urls:
        assert client.get(url).status_code == 404
        assert client.post(url, {}).status_code == 404
    client.force_login(people["viewer"])
    for url in urls:
        assert client.get(url).status_code == 403
        assert client.post(url, {}).status_code == 403
    assert not Job.objects.exists()


def test_the_trained_file_downloads_for_members_of_its_project_only(
    client, project, people, tmp_path
):
    from apps.projects.models import Project

    file = tmp_path / "style.safetensors"
    file.write_bytes(b"weights")
    asset = ImageAsset.objects.create(
        kind="lora",
        name="style",
        path=str(file),
        project=project,
        info={"trained": {"project": project.pk}},
    )
    other = ImageAsset.objects.create(
        kind="lora",
        name="admins",
        path=str(file),  # the platform's: not this project's download
    )
    url = reverse("craft:image_asset_download", args=[project.pk, asset.pk])

    client.force_login(people["viewer"])
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"weights"
    assert 'filename="style.safetensors"' in response["Content-Disposition"]
    assert (
        client.get(reverse("craft:image_asset_download", args=[project.pk, other.pk])).status_code
        == 404
    )

    client.force_login(people["outsider"])
    assert client.get(url).status_code == 404
    elsewhere = Project.objects.create(name="Elsewhere")
    assert (
        client.get(reverse("craft:image_asset_download", args=[elsewhere.pk, asset.pk])).status_code
        == 404
    )


def test_the_craft_page_part_links_launchers_to_both_forms(project):
    from django.template.loader import render_to_string

    html = render_to_string("craft/image_index.html", {"project": project, "can_launch": True})
    assert reverse("craft:image_lora", args=[project.pk]) in html
    assert reverse("craft:image_embedding", args=[project.pk]) in html
    assert "craft-image" not in render_to_string(
        "craft/image_index.html", {"project": project, "can_launch": False}
    )
