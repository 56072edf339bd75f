"""Registered extra networks (LoRAs, embeddings, ControlNets, upscalers), single-file checkpoints,
the stand-alone upscale action and worker-level batching, through the real job runtime
(in-process) on the tiny random pipeline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image
from safetensors.torch import save_file

from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.models import services as model_services
from apps.models.models import BaseModel, ImageAsset
from apps.models.services import ensure_builtin_rows, model_folder
from apps.outputs.models import Output
from workers.imaging.infotext import parse_infotext, read_png_parameters

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tiny_sd(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    model = BaseModel.objects.get(reference="tiny-sd")
    model_folder(model)
    model.refresh_from_db()
    return model


@pytest.fixture
def lora_path(tiny_sd, tmp_path):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from workers.imaging.pipeline import load_pipeline

    donor = load_pipeline(tiny_sd.path, device="cpu")
    torch.manual_seed(1)
    donor.unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,
        )
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(donor.unet))
    StableDiffusionPipeline.save_lora_weights(tmp_path / "lora", unet_lora_layers=layers)
    return tmp_path / "lora" / "pytorch_lora_weights.safetensors"


@pytest.fixture
def embedding_path(tiny_sd, tmp_path):
    import json

    width = json.loads((Path(tiny_sd.path) / "text_encoder" / "config.json").read_text())[
        "hidden_size"
    ]
    torch.manual_seed(2)
    path = tmp_path / "shiny.safetensors"
    save_file({"emb_params": torch.randn(2, width) * 3}, str(path))
    return path


@pytest.fixture
def upscaler_path(tmp_path):
    from workers.imaging.upscalers import build_tiny_esrgan

    return build_tiny_esrgan(tmp_path / "tiny-esrgan.safetensors", scale=4)


def run(project, member, kind="image.generate", **params):
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(project=project, kind=kind, params=params, created_by=member)
    outcome = execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    assert outcome == "succeeded", job.error
    return job


def infotext_of(output: Output) -> dict[str, str]:
    return parse_infotext(read_png_parameters(Path(settings.MEDIA_ROOT, output.file_path)))


def pixels(output: Output) -> bytes:
    with Image.open(Path(settings.MEDIA_ROOT, output.file_path)) as img:
        return img.tobytes()


BASE = {"prompt": "a cat", "steps": 3, "width": 32, "height": 32, "seed": 11}


# ---------------------------------------------------------------- registration


def test_admins_register_each_kind_of_asset_and_bad_files_are_refused(
    tiny_sd, lora_path, embedding_path, upscaler_path, tmp_path, admin_user
):
    lora = model_services.asset_register(
        kind="lora", name="crisp", path=str(lora_path), actor=admin_user
    )
    emb = model_services.asset_register(
        kind="embedding", name="shiny", path=str(embedding_path), actor=admin_user
    )
    up = model_services.asset_register(
        kind="upscaler", name="tiny-4x", path=str(upscaler_path), actor=admin_user
    )
    assert lora.info["rank"] == 4 and len(lora.sha256) == 64
    assert emb.info["vectors"] == 2
    assert up.info["scale"] == 4 and up.info["architecture"] == "ESRGAN"

    pickle = tmp_path / "evil.ckpt"
    pickle.write_bytes(b"not really")
    cases = [
        ({"kind": "lora", "name": "evil", "path": str(pickle)}, "pickle"),
        ({"kind": "lora", "name": "emb-as-lora", "path": str(embedding_path)}, "no LoRA weights"),
        ({"kind": "lora", "name": "has space", "path": str(lora_path)}, "letters, digits"),
        ({"kind": "lora", "name": "crisp", "path": str(lora_path)}, "exists"),
        ({"kind": "upscaler", "name": "x", "path": str(lora_path)}, "upscaler"),
        ({"kind": "controlnet", "name": "x", "path": str(tiny_sd.path)}, "config.json"),
        (
            {"kind": "embedding", "name": "gone", "path": str(tmp_path / "no.safetensors")},
            "no such",
        ),
    ]
    for kwargs, needle in cases:
        with pytest.raises(ValidationError) as info:
            model_services.asset_register(actor=admin_user, **kwargs)
        assert needle.lower() in " ".join(info.value.messages).lower(), (kwargs, info.value)
    assert ImageAsset.objects.count() == 3


def test_the_models_page_lists_image_models_and_assets_with_how_to_use_them(
    client, project, member, tiny_sd, lora_path, admin_user
):
    model_services.asset_register(kind="lora", name="crisp", path=str(lora_path), actor=admin_user)
    client.force_login(member)

    page = client.get(f"/projects/{project.pk}/models/").content.decode()

    assert "Tiny SD" in page and "&lt;lora:crisp:1&gt;" in page


# ---------------------------------------------------------------- generation with assets


def test_a_lora_tag_uses_the_registered_file_and_records_its_hash(
    project, member, tiny_sd, lora_path, admin_user
):
    asset = model_services.asset_register(
        kind="lora", name="crisp", path=str(lora_path), actor=admin_user
    )
    plain = run(project, member, model_id=tiny_sd.pk, **BASE)
    tagged = run(
        project, member, model_id=tiny_sd.pk, **{**BASE, "prompt": "a cat <lora:crisp:0.9>"}
    )

    a, b = Output.objects.get(job=plain), Output.objects.get(job=tagged)
    assert a.sha256 != b.sha256
    params = infotext_of(b)
    assert params["Prompt"] == "a cat <lora:crisp:0.9>"
    assert asset.sha256[:10] in params["Lora hashes"] and "crisp" in params["Lora hashes"]
    # The LoRA was unloaded: the warm pipeline gives the plain image again.
    again = run(project, member, model_id=tiny_sd.pk, **BASE)
    assert Output.objects.get(job=again).sha256 == a.sha256

    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=project,
            kind="image.generate",
            created_by=member,
            params={"model_id": tiny_sd.pk, "prompt": "x <lora:nope:1>"},
        )
    assert "Unknown LoRA nope" in info.value.errors["prompt"]


def test_an_embedding_name_in_the_prompt_is_loaded_and_recorded(
    project, member, tiny_sd, embedding_path, admin_user
):
    model_services.asset_register(
        kind="embedding", name="shiny", path=str(embedding_path), actor=admin_user
    )
    plain = run(project, member, model_id=tiny_sd.pk, **BASE)
    used = run(project, member, model_id=tiny_sd.pk, **{**BASE, "prompt": "a (shiny:1.1) cat"})

    assert Output.objects.get(job=plain).sha256 != Output.objects.get(job=used).sha256
    assert "shiny" in infotext_of(Output.objects.get(job=used))["TI hashes"]


def test_hires_fix_with_a_registered_upscaler(project, member, tiny_sd, upscaler_path, admin_user):
    model_services.asset_register(
        kind="upscaler", name="tiny-4x", path=str(upscaler_path), actor=admin_user
    )
    job = run(
        project,
        member,
        model_id=tiny_sd.pk,
        **BASE,
        hires=True,
        hires_scale=2,
        hires_upscaler="tiny-4x",
        hires_steps=2,
    )
    output = Output.objects.get(job=job)
    assert (output.width, output.height) == (64, 64)
    assert infotext_of(output)["Hires upscaler"] == "tiny-4x"

    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=project,
            kind="image.generate",
            created_by=member,
            params={"model_id": tiny_sd.pk, "prompt": "x", "hires": True, "hires_upscaler": "nope"},
        )
    assert "No upscaler named nope" in info.value.errors["hires_upscaler"]


def test_a_registered_controlnet_with_a_gallery_control_image(project, member, tiny_sd, admin_user):
    from diffusers import ControlNetModel

    from workers.imaging.pipeline import load_pipeline

    pipe = load_pipeline(tiny_sd.path, device="cpu")
    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(
        pipe.unet, conditioning_embedding_out_channels=(8, 16, 32, 32)
    )
    with torch.no_grad():  # from_unet starts with no effect: give the output convolutions weights
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            for p in block.parameters():
                p.normal_(0.0, 0.05)
    folder = Path(settings.MODELS_DIR) / "cn-tiny"
    controlnet.save_pretrained(folder, safe_serialization=True)
    asset = model_services.asset_register(
        kind="controlnet", name="cn-tiny", path=str(folder), actor=admin_user
    )
    source = Output.objects.get(job=run(project, member, model_id=tiny_sd.pk, **BASE))
    plain = Output.objects.get(job=run(project, member, model_id=tiny_sd.pk, **{**BASE, "seed": 5}))

    guided = run(
        project,
        member,
        model_id=tiny_sd.pk,
        **{**BASE, "seed": 5},
        controlnet=True,
        controlnet_model_id=asset.pk,
        control_output_id=source.pk,
        control_preprocess="image",
    )
    output = Output.objects.get(job=guided)
    assert output.sha256 != plain.sha256
    assert "Model: cn-tiny" in infotext_of(output)["ControlNet 0"]


# ---------------------------------------------------------------- stand-alone upscale


def test_upscale_action_makes_a_new_gallery_image_with_postprocess_infotext(
    client, project, member, tiny_sd, upscaler_path, admin_user
):
    model_services.asset_register(
        kind="upscaler", name="tiny-4x", path=str(upscaler_path), actor=admin_user
    )
    source = Output.objects.get(job=run(project, member, model_id=tiny_sd.pk, **BASE))

    job = run(project, member, kind="image.upscale", output_id=source.pk, upscaler="tiny-4x")
    big = Output.objects.get(job=job)
    assert (big.width, big.height) == (128, 128)
    with Image.open(Path(settings.MEDIA_ROOT, big.file_path)) as img:
        assert img.size == (128, 128)
    params = infotext_of(big)
    assert params["Postprocess upscaler"] == "tiny-4x" and params["Postprocess upscale by"] == "4"
    assert params["Prompt"] == "a cat" and params["Seed"] == "11"  # the original's parameters

    lanczos = run(
        project, member, kind="image.upscale", output_id=source.pk, upscaler="lanczos", scale=2
    )
    assert Output.objects.get(job=lanczos).width == 64

    # The gallery's button creates the job; an unknown upscaler is refused with its name.
    client.force_login(member)
    response = client.post(
        f"/projects/{project.pk}/gallery/{source.pk}/upscale/", {"upscaler": "nope", "scale": "2"}
    )
    assert response.status_code == 302
    assert Job.objects.filter(kind="image.upscale").count() == 2


# ---------------------------------------------------------------- single-file checkpoints


def test_a_single_file_checkpoint_registers_and_generates_like_its_folder(
    project, member, tiny_sd, tmp_path, admin_user
):
    from tests.imaging.ldm_export import export_ldm_checkpoint
    from workers.imaging.pipeline import load_pipeline

    file = export_ldm_checkpoint(
        load_pipeline(tiny_sd.path, device="cpu"), tmp_path / "tiny-sd.safetensors"
    )
    with pytest.raises(ValidationError):
        model_services.model_register_single_file(
            name="pickled", path=str(tmp_path / "x.ckpt"), actor=admin_user
        )
    with pytest.raises(ValidationError) as info:  # offline: the configuration must be local
        model_services.model_register_single_file(
            name="no config", path=str(file), actor=admin_user
        )
    assert "offline" in str(info.value)
    single = model_services.model_register_single_file(
        name="Tiny single", path=str(file), config_path=tiny_sd.path, actor=admin_user
    )
    assert single.is_ready and single.model_type == "single_file"

    a = Output.objects.get(job=run(project, member, model_id=tiny_sd.pk, **BASE))
    b = Output.objects.get(job=run(project, member, model_id=single.pk, **BASE))
    # The same operations on equal weights (load_pipeline moves both to aligned memory, see
    # tests/imaging/test_single_file.py): the very same pixels.
    assert pixels(b) == pixels(a)


# ---------------------------------------------------------------- worker-level batching


def _queue(project, member, **params):
    return job_services.job_create(
        project=project, kind="image.generate", params=params, created_by=member
    )


def test_compatible_queued_jobs_run_in_one_batch_with_the_images_they_get_alone(
    project, member, tiny_sd, settings
):
    from workers.tasks.runtime import execute_job

    settings.ATELIER = {**settings.ATELIER, "PROJECT_MAX_CONCURRENT_JOBS": 10}
    project.max_concurrent_jobs = 10
    project.save()
    prompts = ["a cat", "a dog", "a bird"]
    jobs = [_queue(project, member, model_id=tiny_sd.pk, **{**BASE, "prompt": p}) for p in prompts]
    other_size = _queue(project, member, model_id=tiny_sd.pk, **{**BASE, "width": 48})
    # Another project at its concurrency limit: its compatible job waits for its own slot.
    from apps.projects.models import Membership, Project

    full = Project.objects.create(name="Full", max_concurrent_jobs=1)
    Membership.objects.create(project=full, user=member, role="member")
    busy = _queue(full, member, model_id=tiny_sd.pk, **{**BASE, "width": 40})
    Job.objects.filter(pk=busy.pk).update(state="running")
    waiting = _queue(full, member, model_id=tiny_sd.pk, **BASE)
    assert Job.objects.get(pk=waiting.pk).dispatched_at is None

    assert execute_job(jobs[0].pk, worker_id="test") == "succeeded"
    assert Job.objects.get(pk=waiting.pk).state == "queued"

    for job in jobs:
        job.refresh_from_db()
        assert job.state == "succeeded", job.error
        assert len(job.result["batched_with"]) == 2
    assert Job.objects.get(pk=other_size.pk).state == "queued"  # not compatible: left alone
    # The late Celery message for a batched job finds it done.
    assert execute_job(jobs[1].pk, worker_id="test") == "not-claimed"

    for job, prompt in zip(jobs, prompts, strict=True):
        alone = Output.objects.get(
            job=run(project, member, model_id=tiny_sd.pk, **{**BASE, "prompt": prompt})
        )
        batched = Output.objects.get(job=job)
        assert infotext_of(alone) == infotext_of(batched)
        # With several torch threads a few CPU kernels split work by batch size: a batched image
        # may differ from its solo run by a level in a few pixels (identical with one thread).
        a, b = pixels(alone), pixels(batched)
        diffs = [abs(x - y) for x, y in zip(a, b, strict=True) if x != y]
        assert max(diffs, default=0) <= 2 and len(diffs) <= len(a) // 100, diffs[:20]


def test_cancelling_one_job_of_a_batch_finishes_it_and_the_others_complete(
    project, member, tiny_sd, settings
):
    from workers.tasks.runtime import execute_job

    project.max_concurrent_jobs = 10
    project.save()
    # 40 steps (~0.2-0.6 s each here): the victim is cancelled at its first progress event,
    # long before the batch could end.
    params = {**BASE, "steps": 40, "width": 64, "height": 64}
    jobs = [_queue(project, member, model_id=tiny_sd.pk, **params) for _ in range(3)]
    victim = jobs[1]

    def cancel_when_running():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = Job.objects.get(pk=victim.pk)
            if job.state == "running" and job.progress > 0:
                job_services.job_cancel(job=job, actor=member)
                return
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    execute_job(jobs[0].pk, worker_id="test")
    canceller.join()

    states = {j.pk: Job.objects.get(pk=j.pk).state for j in jobs}
    assert states[victim.pk] == "cancelled"
    assert states[jobs[0].pk] == states[jobs[2].pk] == "succeeded"
    assert not Output.objects.filter(job=victim).exists()
    assert Output.objects.filter(job=jobs[2]).count() == 1
    finished = Job.objects.get(pk=victim.pk).finished_at
    assert finished < Job.objects.get(pk=jobs[0].pk).finished_at  # not held until the batch ended


# ---------------------------------------------------------------- uploads


def test_an_uploaded_image_becomes_an_init_image_and_bad_files_change_nothing(
    client, project, member, tiny_sd
):
    def files():
        media = Path(settings.MEDIA_ROOT)
        return sorted(p.name for p in media.rglob("*") if p.is_file()) if media.exists() else []

    client.force_login(member)
    url = f"/projects/{project.pk}/gallery/upload/"
    before = (files(), Output.objects.count())
    for name, data in [
        ("notes.png", b"not an image at all"),
        ("anim.gif", _image_bytes("GIF", (8, 8))),
        ("huge.png", _image_bytes("PNG", (5000, 4000))),
    ]:
        response = client.post(url, {"file": _upload(name, data)}, follow=True)
        text = response.content.decode()
        assert name in text and ("not accepted" in text or "readable" in text or "4096" in text)
    assert (files(), Output.objects.count()) == before

    response = client.post(url, {"file": _upload("sketch.jpg", _image_bytes("JPEG", (48, 40)))})
    upload = Output.objects.get(params__uploaded="sketch.jpg")
    assert response.url == f"/projects/{project.pk}/gallery/{upload.pk}/"
    assert (upload.width, upload.height, upload.created_by) == (48, 40, member)
    with Image.open(Path(settings.MEDIA_ROOT, upload.file_path)) as img:
        assert img.format == "PNG" and "parameters" not in img.info  # no AI disclosure

    job = run(
        project,
        member,
        model_id=tiny_sd.pk,
        **BASE,
        init_output_id=upload.pk,
        denoising_strength=0.6,
    )
    assert Output.objects.get(job=job).width == 32


def _image_bytes(fmt: str, size) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format=fmt)
    return buffer.getvalue()


def _upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def test_an_admin_registers_a_diffusers_folder_as_an_image_model(
    project, member, tiny_sd, tmp_path, admin_user
):
    import json
    import shutil

    folder = tmp_path / "my-sd"
    shutil.copytree(tiny_sd.path, folder)
    model = model_services.model_register_folder(name="My SD", path=str(folder), actor=admin_user)
    assert (model.kind, model.architecture, model.info["family"]) == (
        "image",
        "StableDiffusionPipeline",
        "sd",
    )
    assert Output.objects.get(job=run(project, member, model_id=model.pk, **BASE)).width == 32

    evil = tmp_path / "custom"
    shutil.copytree(tiny_sd.path, evil)
    index = json.loads((evil / "model_index.json").read_text())
    (evil / "model_index.json").write_text(json.dumps({**index, "custom_pipeline": "x"}))
    with pytest.raises(ValidationError) as info:
        model_services.model_register_folder(name="Custom", path=str(evil), actor=admin_user)
    assert "custom pipeline code is never run" in str(info.value)


def test_a_lora_trained_in_one_project_is_unknown_to_another(
    project, member, tiny_sd, lora_path, admin_user, make_user
):
    from apps.projects.models import Membership, Project

    lora = model_services.asset_register(
        kind="lora", name="ours", path=str(lora_path), actor=admin_user, project=project
    )
    other = Project.objects.create(name="Other")
    outsider = make_user("stranger-in-other")
    Membership.objects.create(project=other, user=outsider, role="member")
    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=other,
            kind="image.generate",
            created_by=outsider,
            params={"model_id": tiny_sd.pk, "prompt": "x <lora:ours:1>"},
        )
    assert "Unknown LoRA ours" in info.value.errors["prompt"]
    assert "ours" not in info.value.errors["prompt"].split("known:")[1]

    job = run(project, member, model_id=tiny_sd.pk, **{**BASE, "prompt": "a cat <lora:ours:1>"})
    assert lora.short_hash in infotext_of(Output.objects.get(job=job))["Lora hashes"]
