"""Job kind ``image.xyz``: A1111's X/Y/Z plot over the image job's parameters.

The params are an image job's (:class:`~apps.images.jobkinds.ImageParams`) plus one to three
``axes``, each a field and its values as typed in A1111 (workers/imaging/xyz.py parses them).
The job makes every combination in one run, sharing pipeline calls where the cells allow it
(``generate_batch``: a cell gets exactly the image a single job with its settings would), saves
each image to the gallery as an image job would, and one labelled grid image beside them. Every
combination counts in the image budget.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from apps.images.jobkinds import ImageParams, check
from apps.jobs.registry import JobKind, register, runner_at, submit_checks
from apps.jobs.registry import get as get_kind

AxisField = Literal["seed", "steps", "cfg_scale", "sampler", "prompt_sr", "lora_weight"]


class XyzAxisParams(BaseModel):
    model_config = {"extra": "forbid"}

    field: AxisField = Field(..., title="Varies")
    # As typed in A1111: "1, 2, 3", "1-5", "1-9 (+2)", "1-10 [4]"; Prompt S/R: the text to
    # find first, then what replaces it; CSV quotes keep a comma inside a value.
    values: str = Field(..., min_length=1, max_length=4000, title="Values")
    lora: str = Field("", max_length=200, title="LoRA (for LoRA weight)")


class XyzParams(ImageParams):
    axes: list[XyzAxisParams] = Field(..., min_length=1, max_length=3, title="Axes (X, Y, Z)")

    @field_validator("axes")
    @classmethod
    def _values_parse(cls, axes: list[XyzAxisParams]) -> list[XyzAxisParams]:
        from workers.imaging.xyz import AXIS_NAMES, XyzError, parse_axis

        for name, axis in zip(AXIS_NAMES, axes, strict=False):
            try:
                parse_axis(axis.field, axis.values, lora=axis.lora)
            except XyzError as exc:
                raise ValueError(f"{name} axis: {exc}") from None
        return axes

    @model_validator(mode="after")
    def _one_image_per_cell(self):
        if self.batch_count != 1 or self.batch_size != 1:
            raise ValueError("An X/Y/Z plot makes one image per cell: batch count and size 1")
        if getattr(self, "mask_id", None):
            raise ValueError("An X/Y/Z plot does not inpaint: remove the mask")
        return self


def parsed_axes(params: XyzParams) -> list:
    """The params' axes as workers.imaging.xyz.Axis (already validated by the schema)."""
    from workers.imaging.xyz import parse_axis

    return [parse_axis(a.field, a.values, lora=a.lora) for a in params.axes]


def base_settings(params: XyzParams) -> dict[str, Any]:
    """The image job's parameters every cell starts from."""
    return params.model_dump(exclude={"axes"})


def check_xyz(project, params: XyzParams, *, user) -> dict[str, str]:
    """The image job's checks for every distinct prompt and sampler the cells use (a Prompt S/R
    may bring in a LoRA tag or a blocked word, a sampler axis names samplers), and the axes
    against the prompt."""
    from workers.imaging.xyz import XyzError, check_axes, fix_seeds, plan_cells

    axes = parsed_axes(params)
    try:
        check_axes(base_settings(params), axes)
    except XyzError as exc:
        return {"axes": str(exc)}
    settings, axes = fix_seeds(base_settings(params), axes, pick=lambda: 0)
    seen: set[tuple] = set()
    for cell in plan_cells(settings, axes):
        key = tuple(cell.settings[k] for k in ("prompt", "negative_prompt", "sampler"))
        if key in seen:
            continue
        seen.add(key)
        single = cell_params(cell.settings)
        # The submit checks (blocked prompts) read the plain prompt fields only: a Prompt S/R
        # value reaches them here, as the prompt of the image it makes.
        errors = check(project, single, user=user) or submit_checks(
            project=project, user=user, kind=get_kind("image.generate"), params=single
        )
        if errors:
            return errors
    return {}


def cell_params(settings: dict[str, Any]) -> ImageParams:
    """One cell as the image job it stands for (what its gallery image records)."""
    return ImageParams.model_validate(settings)


def budget_xyz(project, params: XyzParams, rules) -> dict[str, str]:
    """Every cell counts: the images' pixels at the most steps any cell takes."""
    from apps.quotas.services import image_budget

    axes = parsed_axes(params)
    steps = max((max(a.values) for a in axes if a.field == "steps"), default=params.steps)
    return image_budget(
        width=params.width,
        height=params.height,
        steps=steps,
        images=math.prod(len(a.values) for a in axes),
        hires_scale=params.hires_scale if params.hires else None,
        hires_steps=params.hires_steps,
        rules=rules,
    )


def run_xyz(ctx):
    """Every cell's image (shared pipeline calls), saved like an image job's, and the grid."""
    from apps.images.runners import build_request, model_pipeline
    from apps.models.models import BaseModel as Base
    from workers.imaging.pipeline import generate_batch
    from workers.imaging.xyz import fix_seeds, plan_cells

    p = ctx.params
    model = Base.objects.get(pk=p.model_id)
    pipe, loaded = model_pipeline(model, ctx.reporter)
    settings, axes = fix_seeds(base_settings(p), parsed_axes(p))
    cells = plan_cells(settings, axes)
    ctx.reporter.log(
        f"X/Y/Z plot: {len(cells)} images on "
        + " x ".join(str(len(a.values)) for a in axes)
        + f" ({', '.join(a.label for a in axes)}); {model.name}: "
        + ("loaded" if loaded else "warm (no load)")
    )
    singles = [cell_params(cell.settings) for cell in cells]
    requests = [
        build_request(s, model, job_id=ctx.job_id, project_id=ctx.project_id) for s in singles
    ]
    images = generate_batch(
        pipe,
        requests,
        on_step=lambda step, total, *a: ctx.reporter.step(step, total),
        should_stop=ctx.reporter.should_stop,
        on_preview=ctx.reporter.preview,
    )
    generated = [found[0] for found in images]
    return _saved_plot(ctx, model, singles, cells, axes, generated, loaded)


def _saved_plot(ctx, model, singles, cells, axes, generated, loaded):
    """The result once the cells' PNGs and the grid are written (deferred, as image jobs are)."""
    from apps.images.runners import prepare_image, record_image, recorded_params
    from apps.jobs.registry import Deferred
    from apps.jobs.selectors import job_author_id
    from workers.imaging.infotext import build_infotext
    from workers.imaging.xyz import draw_grid, grid_params

    def prepare():
        author_id = job_author_id(ctx)
        cell_outputs = [
            prepare_image(
                ctx=ctx,
                image=image.image,
                infotext=image.infotext,
                params={**recorded_params(single), "xyz_cell": list(cell.coords)},
                seed=image.seed,
                model=model,
                author_id=author_id,
                prompt=single.prompt,
                negative=single.negative_prompt,
                tags=("xyz",),
            )
            for single, cell, image in zip(singles, cells, generated, strict=True)
        ]
        grid, layout = draw_grid([g.image for g in generated], axes, cells)
        first = generated[0]
        infotext = build_infotext(
            first.prompt, first.negative_prompt, {**first.params, **grid_params(axes)}
        )
        grid_output = prepare_image(
            ctx=ctx,
            image=grid,
            infotext=infotext,
            params={**recorded_params(ctx.params), "xyz_grid": _grid_record(axes, layout)},
            seed=first.seed,
            model=model,
            author_id=author_id,
            prompt=ctx.params.prompt,
            negative=ctx.params.negative_prompt,
            tags=("xyz-grid",),
        )
        return cell_outputs, grid_output

    def record(prepared):
        cell_outputs, grid_output = prepared
        return {
            "outputs": [record_image(ctx, fields, verdict) for fields, verdict in cell_outputs],
            "grid": record_image(ctx, *grid_output),
            "axes": [{"label": a.label, "values": list(a.values)} for a in axes],
            "model_loaded": loaded,
        }

    return Deferred(prepare=prepare, record=record)


def _grid_record(axes, layout) -> dict[str, Any]:
    """What the grid output keeps about its layout: each cell's box, the zoom, the axes."""
    return {
        "axes": [{"label": a.label, "values": list(a.values)} for a in axes],
        "boxes": [list(box) for box in layout.boxes],
        "zoom": layout.zoom,
    }


register(
    JobKind(
        name="image.xyz",
        label="X/Y/Z plot",
        queue="gpu",
        params=XyzParams,
        runner=runner_at("apps.images.xyz:run_xyz"),
        check=check_xyz,
        prompt_fields=("prompt", "negative_prompt"),
        budget=budget_xyz,
        launchable=False,
        description="A1111's X/Y/Z plot: vary seed, CFG scale, steps, sampler, a LoRA's weight "
        "or a prompt search/replace across up to three axes; every image and one labelled grid.",
    )
)
