"""Job kind: image generation (txt2img, img2img, hi-res fix, ControlNet canny) on the gpu queue."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from apps.jobs.registry import JobKind, register, runner_at


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
    # "latent", "lanczos" or the name of a registered ESRGAN-family upscaler.
    hires_upscaler: str = Field("latent", min_length=1, max_length=100, title="Upscaler")
    hires_steps: int = Field(10, ge=1, le=150, title="Hi-res steps")
    hires_denoise: float = Field(0.5, ge=0, le=1, title="Hi-res denoising")
    controlnet: bool = Field(False, title="ControlNet")
    controlnet_model_id: int | None = Field(None, ge=1, title="ControlNet model")
    control_output_id: int | None = Field(None, ge=1, title="Control image (output id)")
    # "canny": OpenCV edges of the control image, made in the job; "image": used as it is
    control_preprocess: Literal["canny", "image"] = Field("canny", title="Preprocessor")
    control_weight: float = Field(1.0, ge=0, le=4, title="Control weight")
    canny_low: int = Field(100, ge=0, le=255)
    canny_high: int = Field(200, ge=0, le=255)
    # Inpainting (A1111's img2img "Inpaint" tab): a mask uploaded to images:mask_upload, white =
    # redraw; with an ordinary checkpoint the unmasked pixels come back unchanged.
    mask_id: int | None = Field(None, ge=1, title="Inpaint mask (upload id)")
    mask_blur: int = Field(4, ge=0, le=64, title="Mask blur")
    inpainting_mask_invert: bool = Field(False, title="Inpaint not masked")
    inpaint_full_res: bool = Field(False, title="Only masked")
    inpaint_full_res_padding: int = Field(32, ge=0, le=256, title="Only masked padding, pixels")

    @model_validator(mode="after")
    def _inpaint_needs_an_init_image(self):
        if self.mask_id and not self.init_output_id:
            raise ValueError("Inpainting needs an init image (init_output_id) under the mask")
        if self.mask_id and (self.controlnet or self.hires):
            raise ValueError("Inpainting does not combine with ControlNet or the hi-res fix")
        return self

    @model_validator(mode="after")
    def _controlnet_needs_an_image(self):
        if self.controlnet and not self.control_output_id:
            raise ValueError("ControlNet needs a control image (control_output_id)")
        if self.controlnet and not self.controlnet_model_id:
            raise ValueError("ControlNet needs a registered ControlNet model (controlnet_model_id)")
        if self.canny_low > self.canny_high:
            raise ValueError("Canny: the low threshold must not exceed the high one")
        return self


def source_image(project, user, output_id: int):
    """An image output of the project that `user` may see (the outputs' one visibility rule), or
    None: a member cannot feed a flagged or rejected image they cannot see into a job."""
    from apps.outputs.selectors import visible_outputs_for

    return (
        visible_outputs_for(project=project, user=user)
        .filter(pk=output_id, kind="image")
        .exclude(file_path="")
        .first()
    )


def check(project, params: ImageParams, *, user) -> dict[str, str]:
    from apps.models.models import BaseModel as Base
    from workers.imaging.samplers import SAMPLER_NAMES

    errors: dict[str, str] = {}
    if not (
        Base.objects.filter(pk=params.model_id, kind="image", enabled=True)
        .usable_by(project.pk)
        .exists()
    ):
        errors["model_id"] = "No such image model"
    # A cheap name check here (resolving imports diffusers: seconds in a web process); aliases and
    # schedule suffixes are resolved, and refused clearly, by the worker.
    known = {n.lower() for n in SAMPLER_NAMES}
    name = params.sampler.lower()
    if name not in known and name.rsplit(" ", 1)[0] not in known and not name.startswith("k_"):
        errors["sampler"] = f"Unknown sampler; choose one of: {', '.join(SAMPLER_NAMES)}"
    errors.update(extra_network_errors(params, project_id=project.pk))
    for field in ("init_output_id", "control_output_id"):
        ref = getattr(params, field)
        if ref and source_image(project, user, ref) is None:
            errors[field] = f"No image output {ref} in this project"
    if params.mask_id and "init_output_id" not in errors:
        errors.update(mask_errors(project, user, params))
    return errors


def mask_errors(project, user, params: ImageParams) -> dict[str, str]:
    """The mask must be one of the project's uploaded masks, drawn with the init image's
    proportions (it is stretched onto the image: one drawn for another picture lands elsewhere)."""
    from apps.images.models import InpaintMask
    from workers.imaging.inpaint import MaskError, check_proportions

    mask = InpaintMask.objects.filter(project=project, pk=params.mask_id).first()
    if mask is None:
        return {"mask_id": f"No inpaint mask {params.mask_id} in this project"}
    init = source_image(project, user, params.init_output_id or 0)
    if init is not None and init.width and init.height:
        try:
            check_proportions((mask.width, mask.height), (init.width, init.height))
        except MaskError as exc:
            return {"mask_id": str(exc)}
    return {}


def extra_network_errors(params: ImageParams, *, project_id: int) -> dict[str, str]:
    """LoRA tags, the hi-res upscaler and the ControlNet must name registered, enabled assets
    that the project may use (the platform's, or trained in the project)."""
    from apps.models.models import AssetKind, ImageAsset
    from workers.imaging.prompts import PromptSyntaxError, extract_loras

    errors: dict[str, str] = {}
    wanted: list[str] = []
    for field in ("prompt", "negative_prompt"):
        try:
            wanted += [name for name, _ in extract_loras(getattr(params, field))[1]]
        except PromptSyntaxError as exc:
            errors[field] = str(exc)
    assets = ImageAsset.objects.filter(enabled=True).usable_by(project_id)
    if wanted:
        known = set(assets.filter(kind=AssetKind.LORA).values_list("name", flat=True))
        missing = [n for n in dict.fromkeys(wanted) if n not in known]
        if missing:
            listed = ", ".join(sorted(known)) or "none registered yet"
            errors["prompt"] = f"Unknown LoRA {', '.join(missing)} (known: {listed})"
    upscaler = params.hires_upscaler
    if upscaler.lower() not in ("latent", "lanczos") and not (
        assets.filter(kind=AssetKind.UPSCALER, name=upscaler).exists()
    ):
        errors["hires_upscaler"] = f"No upscaler named {upscaler}"
    if params.controlnet and not (
        assets.filter(kind=AssetKind.CONTROLNET, pk=params.controlnet_model_id).exists()
    ):
        errors["controlnet_model_id"] = "No such ControlNet model"
    return errors


def budget(project, params: ImageParams, rules) -> dict[str, str]:
    """Pixels x steps of every image (and its hi-res pass), and the final size (apps/quotas)."""
    from apps.quotas.services import image_budget

    return image_budget(
        width=params.width,
        height=params.height,
        steps=params.steps,
        images=params.batch_count * params.batch_size,
        hires_scale=params.hires_scale if params.hires else None,
        hires_steps=params.hires_steps,
        rules=rules,
    )


def batch_key(p: ImageParams) -> tuple | None:
    """Jobs that can share pipeline calls: same model, size and sampling; no init/control image.
    (The pure generate_batch groups further, e.g. by LoRAs and prompt length.)"""
    if p.init_output_id or p.controlnet:
        return None
    return (
        p.model_id,
        p.width,
        p.height,
        p.sampler.lower(),
        p.steps,
        float(p.cfg_scale),
        (p.hires, p.hires_scale, p.hires_upscaler, p.hires_steps, p.hires_denoise)
        if p.hires
        else None,
    )


register(
    JobKind(
        name="image.generate",
        label="Image generation",
        queue="gpu",
        params=ImageParams,
        runner=runner_at("apps.images.runners:run_generate"),
        check=check,
        prompt_fields=("prompt", "negative_prompt"),
        budget=budget,
        batch_key=batch_key,
        batch_runner=runner_at("apps.images.runners:run_generate_batch"),
        lookahead=True,
        launchable=False,
        description="txt2img / img2img with A1111 prompts, samplers, hi-res fix and ControlNet.",
    )
)


class UpscaleParams(BaseModel):
    model_config = {"extra": "forbid"}

    output_id: int = Field(..., ge=1, title="Image (output id)")
    # "lanczos" or the name of a registered ESRGAN-family upscaler
    upscaler: str = Field("lanczos", min_length=1, max_length=100, title="Upscaler")
    scale: float = Field(4.0, ge=1, le=8, title="Upscale by")
    tile: int = Field(512, ge=32, le=2048, title="Tile size (px)")


def check_upscale(project, params: UpscaleParams, *, user) -> dict[str, str]:
    from apps.models.models import AssetKind, ImageAsset

    errors: dict[str, str] = {}
    source = source_image(project, user, params.output_id)
    if source is None:
        errors["output_id"] = f"No image output {params.output_id} in this project"
    elif max(source.width, source.height) * params.scale > 8192:
        errors["scale"] = "The result would be larger than 8192 px on a side"
    if params.upscaler.lower() == "lanczos":
        return errors
    asset = ImageAsset.objects.filter(
        kind=AssetKind.UPSCALER, name=params.upscaler, enabled=True
    ).first()
    if asset is None:
        errors["upscaler"] = f"No upscaler named {params.upscaler}"
    elif source is not None:
        # The model runs whole passes (then Lanczos down to the asked size): bound the largest
        # intermediate image, e.g. 5x with a 4x model computes 16x first.
        factor, model_scale = 1, max(2, int(asset.info.get("scale", 4)))
        while factor < params.scale:
            factor *= model_scale
        if max(source.width, source.height) * factor > 16384:
            errors["scale"] = (
                f"{params.scale:g}x with a {model_scale}x model makes a "
                f"{max(source.width, source.height) * factor} px intermediate image; choose a "
                f"power of {model_scale} or a smaller factor"
            )
    return errors


register(
    JobKind(
        name="image.upscale",
        label="Image upscale",
        queue="gpu",
        params=UpscaleParams,
        runner=runner_at("apps.images.runners:run_upscale"),
        check=check_upscale,
        launchable=False,
        description="Upscale a gallery image with Lanczos or a registered ESRGAN-family model, "
        "in tiles.",
    )
)


# The X/Y/Z plot kind builds on ImageParams above; importing it here registers it with the rest.
import apps.images.xyz  # noqa: E402, F401
