"""The platform side of image generation: pipeline from the warm cache, PNGs with infotext into
media, thumbnails, one gallery Output per image."""

from __future__ import annotations

import io
from pathlib import Path

from django.conf import settings

from apps.jobs.models import Job
from apps.models.models import BaseModel
from apps.models.services import model_folder
from apps.outputs.models import Output

THUMB_SIZE = 256


def _load_output_image(project_id: int, output_id: int | None):
    from PIL import Image

    if not output_id:
        return None
    output = Output.objects.get(pk=output_id, project_id=project_id, kind="image")
    with Image.open(Path(settings.MEDIA_ROOT) / output.file_path) as img:
        return img.convert("RGB")


def _pipeline(folder: Path):
    from workers.imaging.pipelines import load_pipeline
    from workers.ml.cache import ModelKey, default_cache

    pipe, loaded = default_cache().get_or_load(
        ModelKey(str(folder), device="auto"), lambda: load_pipeline(folder)
    )
    return pipe, loaded


def run_generate(ctx) -> dict:
    from PIL import Image

    from workers.imaging.infotext import write_png
    from workers.imaging.pipelines import GenerationRequest, generate_images

    p = ctx.params
    model = BaseModel.objects.get(pk=p.model_id)
    folder = model_folder(model, log_to=ctx.reporter.log)
    pipe, loaded = _pipeline(folder)
    ctx.reporter.log(f"{model.name}: {'loaded' if loaded else 'warm (no load)'}")
    req = GenerationRequest(
        prompt=p.prompt,
        negative_prompt=p.negative_prompt,
        sampler=p.sampler,
        steps=p.steps,
        cfg_scale=p.cfg_scale,
        seed=p.seed,
        width=p.width,
        height=p.height,
        batch_count=p.batch_count,
        batch_size=p.batch_size,
        denoising_strength=p.denoising_strength,
        init_image=_load_output_image(ctx.project_id, p.init_output_id),
        hires={
            "scale": p.hires_scale,
            "steps": p.hires_steps,
            "denoise": p.hires_denoise,
            "upscaler": p.hires_upscaler,
        }
        if p.hires
        else None,
        controlnet={
            "type": "canny",
            "image": _load_output_image(ctx.project_id, p.control_output_id),
            "low": p.canny_low,
            "high": p.canny_high,
        }
        if p.controlnet
        else None,
        extra_params={"Model": model.name},
    )
    images = generate_images(
        pipe,
        req,
        on_step=lambda step, total, *a: ctx.reporter.step(step, total),
        should_stop=ctx.reporter.should_stop,
        on_preview=ctx.reporter.preview,
    )
    author_id = Job.objects.filter(pk=ctx.job_id).values_list("created_by_id", flat=True).first()
    rel_dir = Path("outputs") / str(ctx.project_id)
    out_dir = Path(settings.MEDIA_ROOT) / rel_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for generated in images:
        buffer = io.BytesIO()
        # Only content and parameters in the file: the same seed and settings give the same bytes.
        sha = write_png(generated.image, buffer, generated.infotext)
        name = f"{sha}.png"
        (out_dir / name).write_bytes(buffer.getvalue())
        thumb = generated.image.copy()
        if max(thumb.size) < THUMB_SIZE:  # tiny demo images: scale up crisply for the grid
            factor = max(1, THUMB_SIZE // max(thumb.size))
            thumb = thumb.resize((thumb.width * factor, thumb.height * factor), Image.NEAREST)
        thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
        thumb.save(out_dir / f"{sha}.thumb.png", format="PNG")
        output = Output.objects.create(
            project_id=ctx.project_id,
            job_id=ctx.job_id,
            kind="image",
            prompt=p.prompt,
            negative_prompt=p.negative_prompt,
            params={**p.model_dump(), "infotext": generated.infotext},
            seed=generated.seed,
            base_model=model,
            sha256=sha,
            file_path=str(rel_dir / name),
            thumb_path=str(rel_dir / f"{sha}.thumb.png"),
            width=generated.image.width,
            height=generated.image.height,
            created_by_id=author_id,
        )
        url = f"/projects/{ctx.project_id}/gallery/{output.pk}/"
        outputs.append(
            {
                "id": output.pk,
                "seed": generated.seed,
                "url": url,
                "thumb_url": url + "thumb.png",
                "width": output.width,
            }
        )
        ctx.reporter.artifact(str(out_dir / name), name=name)
    return {"outputs": outputs, "model_loaded": loaded}
