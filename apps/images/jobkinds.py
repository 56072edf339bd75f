"""Job kind: image generation (txt2img, img2img, hi-res fix, ControlNet canny) on the gpu queue."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from apps.jobs.registry import JobContext, JobKind, register


class ImageParams(BaseModel):
    model_config = {"extra": "forbid"}

    model_id: int = Field(..., ge=1, title="Model")
    prompt: str = Field(..., min_length=1, max_length=8000, title="Prompt")
    negative_prompt: str = Field("", max_length=8000, title="Negative prompt")
    sampler: str = Field("DPM++ 2M Karras", max_length=64, title="Sampler")
    steps: int = Field(20, ge=1, le=150, title="Steps")
    cfg_scale: float = Field(7.0, ge=0, le=30, title="CFG scale")
    seed: int = Field(-1, ge=-1, le=2**32 - 1, title="Seed")
    width: int = Field(512, ge=16, le=2048, multiple_of=8, title="Width")
    height: int = Field(512, ge=16, le=2048, multiple_of=8, title="Height")
    batch_count: int = Field(1, ge=1, le=16, title="Batch count")
    batch_size: int = Field(1, ge=1, le=8, title="Batch size")
    init_output_id: int | None = Field(None, ge=1, title="Init image (output id)")
    denoising_strength: float = Field(0.75, ge=0, le=1, title="Denoising strength")
    hires: bool = Field(False, title="Hi-res fix")
    hires_scale: float = Field(2.0, ge=1, le=4, title="Upscale by")
    hires_upscaler: Literal["latent", "lanczos"] = Field("latent", title="Upscaler")
    hires_steps: int = Field(10, ge=1, le=150, title="Hi-res steps")
    hires_denoise: float = Field(0.5, ge=0, le=1, title="Hi-res denoising")
    controlnet: bool = Field(False, title="ControlNet (canny)")
    control_output_id: int | None = Field(None, ge=1, title="Control image (output id)")
    canny_low: int = Field(100, ge=0, le=255)
    canny_high: int = Field(200, ge=0, le=255)

    @model_validator(mode="after")
    def _controlnet_needs_an_image(self):
        if self.controlnet and not self.control_output_id:
            raise ValueError("ControlNet needs a control image (control_output_id)")
        return self


def check(project, params: ImageParams) -> dict[str, str]:
    from apps.models.models import BaseModel as Base
    from apps.outputs.models import Output
    from workers.imaging.samplers import SAMPLER_NAMES

    errors: dict[str, str] = {}
    if not Base.objects.filter(pk=params.model_id, kind="image", enabled=True).exists():
        errors["model_id"] = "No such image model"
    # A cheap name check here (resolving imports diffusers: seconds in a web process); aliases and
    # schedule suffixes are resolved, and refused clearly, by the worker.
    known = {n.lower() for n in SAMPLER_NAMES}
    name = params.sampler.lower()
    if name not in known and name.rsplit(" ", 1)[0] not in known and not name.startswith("k_"):
        errors["sampler"] = f"Unknown sampler; choose one of: {', '.join(SAMPLER_NAMES)}"
    for field in ("init_output_id", "control_output_id"):
        ref = getattr(params, field)
        if (
            ref
            and not Output.objects.filter(pk=ref, project=project, kind="image")
            .exclude(file_path="")
            .exists()
        ):
            errors[field] = f"No image output {ref} in this project"
    return errors


def run(ctx: JobContext) -> dict:
    from apps.images import services

    return services.run_generate(ctx)


register(
    JobKind(
        name="image.generate",
        label="Image generation",
        queue="gpu",
        params=ImageParams,
        runner=run,
        check=check,
        launchable=False,
        description="txt2img / img2img with A1111 prompts, samplers, hi-res fix and ControlNet.",
    )
)
