"""The platform side of image generation: pipeline from the warm cache, registered extra networks
(LoRAs, embeddings, ControlNets, upscalers) resolved by name, PNGs with infotext into media,
thumbnails, one gallery Output per image. Compatible queued jobs run together (batch_runner)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from django.conf import settings
from django.urls import reverse

from apps.jobs.models import Job
from apps.jobs.prepared import Prepared
from apps.jobs.registry import Deferred
from apps.jobs.selectors import job_author_id
from apps.models.models import AssetKind, BaseModel, ImageAsset
from apps.models.services import model_folder
from apps.outputs.models import Output
from apps.outputs.services import output_create, thumbnail_name, write_thumbnail
from workers.common.timing import timed


def source_output(job_id: int, output_id: int) -> Output:
    """An image a job's params name, checked again as the job runs: flagged or rejected since
    the job was submitted, it is refused as the submit would refuse it now (the outputs' rule,
    for the job's author)."""
    from apps.images.jobkinds import source_image
    from workers.ml.reporting import JobFailed

    job = Job.objects.select_related("project", "created_by").get(pk=job_id)
    output = source_image(job.project, job.created_by, output_id)
    if output is None:
        raise JobFailed(f"Image output {output_id} is no longer available to this job")
    return output


def _load_output_image(job_id: int, output_id: int | None):
    from PIL import Image

    if not output_id:
        return None
    output = source_output(job_id, output_id)
    with Image.open(Path(settings.MEDIA_ROOT) / output.file_path) as img:
        return img.convert("RGB")


@timed("images.pipeline")
def _pipeline(model: BaseModel, reporter=None):
    """The model's pipeline from the worker's warm cache; a built-in that is trained on first use
    (the digits demo) reports its training as the job's progress and stops on cancel."""
    from workers.imaging.pipeline import load_pipeline
    from workers.ml.cache import ModelKey, default_cache

    folder = model_folder(
        model,
        log_to=reporter.log if reporter else None,
        progress=reporter.step if reporter else None,
        should_stop=reporter.should_stop if reporter else None,
    )
    config = model.config_path or None
    pipe, loaded = default_cache().get_or_load(
        ModelKey(str(folder), device="auto"), lambda: load_pipeline(folder, config=config)
    )
    if loaded:  # the files were read again: so is their hash, at its next use
        _folder_hashes.pop(str(folder), None)
    return pipe, loaded


def model_pipeline(model: BaseModel, reporter=None):
    """(pipeline, loaded now) for image kinds beyond this module's (the X/Y/Z plot)."""
    return _pipeline(model, reporter)


class _RegisteredUpscaler:
    """A registered ESRGAN-family upscaler as the hi-res fix's image upscaler (kept warm)."""

    def __init__(self, asset: ImageAsset):
        self.asset = asset
        self.name = asset.name

    def model(self):
        from workers.imaging.upscalers import load_upscaler
        from workers.ml.cache import ModelKey, default_cache

        model, _ = default_cache().get_or_load(
            ModelKey(self.asset.path, device="auto"), lambda: load_upscaler(self.asset.path)
        )
        return model

    def __call__(self, image, size):
        from PIL import Image

        from workers.imaging.upscalers import upscale

        out = upscale(self.model(), image)
        if out.size != tuple(size):
            out = out.resize(tuple(size), Image.Resampling.LANCZOS)
        return out


_upscalers: dict[tuple[int, str], _RegisteredUpscaler] = {}


def _registered_upscaler(asset: ImageAsset) -> _RegisteredUpscaler:
    """One callable per registered upscaler, so hi-res jobs using it can share pipeline calls
    (the pipeline batches hi-res requests whose upscalers are the same object; it checks for
    cancel before each image it upscales)."""
    key = (asset.pk, asset.sha256)
    if key not in _upscalers:
        _upscalers[key] = _RegisteredUpscaler(asset)
    return _upscalers[key]


# The names of the enabled assets of a kind a project's jobs may use (Prepared: every image job
# looks its prompt over for embedding names, and most use none).
_ASSET_NAMES = Prepared(
    lambda key, *, kind, project_id: _usable_assets(kind, project_id).values_list("name"),
    kind="text",
    project_id="int",
)


def _usable_assets(kind: str, project_id: int):
    """The enabled assets of `kind` a job of the project may use."""
    return ImageAsset.objects.filter(kind=kind, enabled=True).usable_by(project_id)


def _assets(kind: str, project_id: int) -> dict[str, ImageAsset]:
    """The enabled assets of `kind` a job of the project may use, by name."""
    return {a.name: a for a in _usable_assets(kind, project_id)}


# The Model hash of each model folder this worker generates with, taken once per load of its
# pipeline (_pipeline forgets it when it loads the folder again): the hash of the weights in
# memory, without walking and stat-ing the folder's files for every job (~3 ms a job here).
_folder_hashes: dict[str, str | None] = {}


def model_short_hash(model: BaseModel) -> str | None:
    """The infotext's ``Model hash`` (A1111's short hash of the checkpoint; see
    workers/imaging/model_hash.py), hashed once per file and kept in the models folder's cache
    for every worker of the machine; None (left out) when the model has no file to hash."""
    from workers.imaging.model_hash import model_hash

    try:
        folder = model_folder(model)
        key = str(folder)
        if key not in _folder_hashes:
            cache_file = Path(settings.MODELS_DIR) / ".model-hashes.json"
            _folder_hashes[key] = model_hash(folder, cache_file=cache_file)
        return _folder_hashes[key]
    except OSError:
        return None


def build_request(p, model: BaseModel, *, job_id: int, project_id: int):
    """The pure GenerationRequest for a job's params, with every named asset resolved to files."""
    from workers.imaging.pipeline import GenerationRequest
    from workers.imaging.prompts import extract_embeddings, extract_loras

    extra: dict[str, Any] = {"Model": model.name, "Model hash": model_short_hash(model)}
    loras = []
    tags = extract_loras(p.prompt)[1] + extract_loras(p.negative_prompt)[1]
    if tags:
        lora_assets = _assets(AssetKind.LORA, project_id)
        for name, weight in tags:
            asset = lora_assets.get(name)
            if asset is None:
                raise ValueError(f"Unknown LoRA {name}")
            loras.append((asset.path, weight))
        extra["Lora hashes"] = ", ".join(f"{n}: {lora_assets[n].short_hash}" for n, _ in tags)
    text = f"{p.prompt}\n{p.negative_prompt}"
    names = [
        name for (name,) in _ASSET_NAMES.execute(kind=AssetKind.EMBEDDING, project_id=project_id)
    ]
    used = extract_embeddings(text, names)
    embedding_assets = _assets(AssetKind.EMBEDDING, project_id) if used else {}
    used = [name for name in used if name in embedding_assets]  # not disabled meanwhile
    embeddings = [(name, embedding_assets[name].path) for name in used]
    if used:
        extra["TI hashes"] = ", ".join(f"{n}: {embedding_assets[n].short_hash}" for n in used)
    hires = None
    if p.hires:
        upscaler: Any = p.hires_upscaler.lower()
        if upscaler not in ("latent", "lanczos"):
            asset = _assets(AssetKind.UPSCALER, project_id).get(p.hires_upscaler)
            if asset is None:
                raise ValueError(f"No upscaler named {p.hires_upscaler}")
            upscaler = _registered_upscaler(asset)
        hires = {
            "scale": p.hires_scale,
            "steps": p.hires_steps,
            "denoise": p.hires_denoise,
            "upscaler": upscaler,
        }
    controlnet = None
    if p.controlnet:
        asset = ImageAsset.objects.get(
            pk=p.controlnet_model_id, kind=AssetKind.CONTROLNET, enabled=True
        )
        controlnet = {
            "type": p.control_preprocess,
            "image": _load_output_image(job_id, p.control_output_id),
            "low": p.canny_low,
            "high": p.canny_high,
            "model": asset.path,
            "scale": p.control_weight,
        }
    return GenerationRequest(
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
        init_image=_load_output_image(job_id, p.init_output_id),
        hires=hires,
        controlnet=controlnet,
        loras=loras,
        embeddings=embeddings,
        extra_params=extra,
    )


@timed("images.write_image")
def write_image(project_id: int, image, infotext: str) -> tuple[str, Path, Path]:
    """The PNG (A1111 infotext, AI disclosure) named by its SHA-256, and a thumbnail when it saves
    bytes, written durably under media: (sha256, file, thumbnail) as paths relative to media."""
    from workers.imaging.infotext import write_file_durably, write_png

    rel_dir = Path("outputs") / str(project_id)
    out_dir = Path(settings.MEDIA_ROOT) / rel_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    # Only content and parameters in the file: the same seed and settings give the same bytes.
    sha = write_png(image, buffer, infotext)
    name = f"{sha}.png"
    write_file_durably(out_dir / name, buffer.getvalue())
    thumb = thumbnail_name(image, sha)
    thumb_name = thumb if write_thumbnail(image, out_dir / thumb) else name
    return sha, rel_dir / name, rel_dir / thumb_name


def prepare_image(
    *,
    ctx,
    image,
    infotext: str,
    params: dict,
    seed,
    model,
    author_id: int | None,
    prompt="",
    negative="",
    tags=(),
) -> tuple[dict, Any]:
    """Everything of one image's Output but its row: the files written, the row's fields and
    the moderation verdict on them (rule queries, classifiers), so the row's transaction holds
    its locks only for the inserts."""
    from apps.outputs.services import output_check

    sha, file_path, thumb_path = write_image(ctx.project_id, image, infotext)
    fields = {
        "project_id": ctx.project_id,
        "job_id": ctx.job_id,
        "kind": "image",
        "prompt": prompt,
        "negative_prompt": negative,
        "params": {**params, "infotext": infotext},
        "seed": seed,
        "base_model": model,
        "sha256": sha,
        "file_path": str(file_path),
        "thumb_path": str(thumb_path),
        "width": image.width,
        "height": image.height,
        "tags": list(tags),
        "created_by_id": author_id,
    }
    return fields, output_check(project_id=ctx.project_id, kind="image", fields=fields)


@timed("images.record_image")
def record_image(ctx, fields: dict, verdict) -> dict:
    """One prepared image's gallery Output and artifact event; the job result's entry."""
    output = output_create(**fields, verdict=verdict)
    path = Path(settings.MEDIA_ROOT) / output.file_path
    ctx.reporter.artifact(str(path), name=path.name)
    ids = {"project_id": ctx.project_id, "output_id": output.pk}
    return {
        "id": output.pk,
        "output_id": output.pk,  # how every job result names an output (apps/outputs/selectors.py)
        "seed": output.seed,
        "url": reverse("galleries:output", kwargs=ids),
        "thumb_url": reverse("galleries:file", kwargs={**ids, "which": "thumb"}),
        "width": output.width,
    }


def save_image(*, ctx, **image: Any) -> dict:
    """One PNG (A1111 infotext, AI disclosure) named by its SHA-256, a thumbnail and an Output."""
    return record_image(ctx, *prepare_image(ctx=ctx, **image))


def recorded_params(p) -> dict:
    """The job's parameters as the output keeps them: sections that were off are left out."""
    params = p.model_dump()
    sections = {
        "hires": ("hires_scale", "hires_upscaler", "hires_steps", "hires_denoise"),
        "controlnet": (
            "controlnet_model_id",
            "control_output_id",
            "control_preprocess",
            "control_weight",
            "canny_low",
            "canny_high",
        ),
        "mask_id": (
            "mask_blur",
            "inpainting_mask_invert",
            "inpaint_full_res",
            "inpaint_full_res_padding",
        ),
    }
    for switch, fields in sections.items():
        if not params.get(switch):
            for name in fields:
                params.pop(name, None)
    if not params.get("init_output_id"):
        params.pop("denoising_strength", None)
    return params


def _prepare_generated(ctx, model: BaseModel, images) -> list[tuple[dict, Any]]:
    p = ctx.params
    params = recorded_params(p)
    author_id = job_author_id(ctx)
    return [
        prepare_image(
            ctx=ctx,
            image=generated.image,
            infotext=generated.infotext,
            params=params,
            seed=generated.seed,
            model=model,
            author_id=author_id,
            prompt=p.prompt,
            negative=p.negative_prompt,
        )
        for generated in images
    ]


def _saved(ctx, model: BaseModel, images, **result: Any) -> Deferred:
    """The job's result once its images are saved: deferred, so the worker can start its next
    job while this one's PNGs are encoded, hashed, written and checked, then its rows are
    written in the outcome's transaction (apps.jobs.registry.Deferred)."""
    return Deferred(
        prepare=lambda: _prepare_generated(ctx, model, images),
        record=lambda prepared: {
            "outputs": [record_image(ctx, fields, verdict) for fields, verdict in prepared],
            **result,
        },
    )


def run_generate(ctx) -> Deferred:
    from workers.imaging.pipeline import generate_images

    p = ctx.params
    model = BaseModel.objects.get(pk=p.model_id)
    pipe, loaded = _pipeline(model, ctx.reporter)
    ctx.reporter.log(f"{model.name}: {'loaded' if loaded else 'warm (no load)'}")
    req = build_request(p, model, job_id=ctx.job_id, project_id=ctx.project_id)
    images = (inpainter(ctx) if p.mask_id else generate_images)(
        pipe,
        req,
        on_step=lambda step, total, *a: ctx.reporter.step(step, total),
        should_stop=ctx.reporter.should_stop,
        on_preview=ctx.reporter.preview,
    )
    return _saved(ctx, model, images, model_loaded=loaded)


def inpainter(ctx):
    """generate_images for an inpainting job: the job's mask (one of its project's, loaded
    from media) and A1111's inpaint settings bound in."""
    from apps.images.models import InpaintMask
    from apps.images.uploads import mask_image
    from workers.imaging.inpaint import InpaintSettings
    from workers.imaging.pipeline import InvalidRequest
    from workers.imaging.pipeline.inpainting import inpaint_images
    from workers.ml.reporting import JobFailed

    p = ctx.params
    mask = InpaintMask.objects.filter(project_id=ctx.project_id, pk=p.mask_id).first()
    if mask is None:
        raise JobFailed(f"Inpaint mask {p.mask_id} is no longer available to this job")
    settings_ = InpaintSettings(
        mask=mask_image(mask),
        blur=p.mask_blur,
        invert=p.inpainting_mask_invert,
        only_masked=p.inpaint_full_res,
        padding=p.inpaint_full_res_padding,
    )

    def run(pipe, req, **kwargs):
        try:
            return inpaint_images(pipe, req, settings_, **kwargs)
        except InvalidRequest as exc:  # e.g. a mask that, inverted, covers nothing
            raise JobFailed(str(exc)) from None

    return run


def run_generate_batch(contexts: list) -> list:
    """Several compatible jobs in shared pipeline calls; one result (or exception) per job.

    Progress goes to every job; a member whose user cancels is finished as cancelled at once
    (its images are dropped); the pipeline stops when every member has been cancelled."""
    from workers.imaging.pipeline import generate_batch
    from workers.ml.reporting import JobCancelled

    model = BaseModel.objects.get(pk=contexts[0].params.model_id)
    lead = contexts[0]
    pipe, loaded = _pipeline(model, lead.reporter)
    results: list[Any] = [None] * len(contexts)
    requests, owners = [], []
    for i, ctx in enumerate(contexts):
        try:
            requests.append(
                build_request(ctx.params, model, job_id=ctx.job_id, project_id=ctx.project_id)
            )
            owners.append(i)
        except Exception as exc:  # noqa: BLE001 - this member fails alone
            results[i] = exc
    for ctx in contexts:
        ctx.reporter.log(f"{model.name}: {'loaded' if loaded else 'warm (no load)'}")
    dropped: set[int] = set()

    def check_members() -> bool:
        for i in owners:
            if i not in dropped and contexts[i].reporter.should_stop():
                dropped.add(i)
                results[i] = JobCancelled("cancelled")
                if contexts[i].finish_early is not None:
                    contexts[i].finish_early()
        return len(dropped) == len(owners)

    def on_step(step, total, *args):
        check_members()
        for i in owners:
            if i not in dropped:
                contexts[i].reporter.step(step, total)

    def on_preview(image):
        for i in owners:
            if i not in dropped:
                contexts[i].reporter.preview(image)
                return

    if requests:
        images = generate_batch(
            pipe, requests, on_step=on_step, should_stop=check_members, on_preview=on_preview
        )
        for i, generated in zip(owners, images, strict=True):
            if i in dropped:
                continue
            ctx = contexts[i]
            results[i] = _saved(
                ctx,
                model,
                generated,
                model_loaded=loaded,
                batched_with=[c.job_id for c in contexts if c is not ctx],
            )
    return results


def run_upscale(ctx) -> dict:
    """A gallery image upscaled into a new output; its infotext keeps the original's parameters
    and adds A1111's "Postprocess upscale by" / "Postprocess upscaler"."""
    from PIL import Image

    from workers.imaging.upscalers import lanczos_upscale, upscale

    p = ctx.params
    source = source_output(ctx.job_id, p.output_id)
    with Image.open(Path(settings.MEDIA_ROOT) / source.file_path) as img:
        image = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    ctx.reporter.step(0, 1)
    if p.upscaler.lower() == "lanczos":
        name = "Lanczos"
        result = lanczos_upscale(image, p.scale)
        ctx.reporter.step(1, 1)  # one resize, no tiles: done once it returns
    else:
        asset = ImageAsset.objects.get(kind=AssetKind.UPSCALER, name=p.upscaler, enabled=True)
        name = asset.name
        result = upscale(
            _RegisteredUpscaler(asset).model(),
            image,
            scale=p.scale,
            tile=p.tile,
            on_tile=lambda done, total: ctx.reporter.step(done, total),
            should_stop=ctx.reporter.should_stop,
        )
    ctx.reporter.log(f"{source.width}x{source.height} -> {result.width}x{result.height} ({name})")
    original = source.params.get("infotext", "")
    scale = f"{p.scale:g}"
    extra = f"Postprocess upscale by: {scale}, Postprocess upscaler: {name}"
    infotext = f"{original}, {extra}" if original else extra
    saved = save_image(
        ctx=ctx,
        author_id=job_author_id(ctx),
        image=result,
        infotext=infotext,
        params={
            **source.params,
            "upscaled_from": source.pk,
            "upscaler": name,
            "upscale_by": p.scale,
        },
        seed=source.seed,
        model=source.base_model,
        prompt=source.prompt,
        negative=source.negative_prompt,
        tags=[*source.tags, "upscaled"] if "upscaled" not in source.tags else source.tags,
    )
    return {"outputs": [saved], "source": source.pk}
