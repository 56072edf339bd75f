"""Checks for the extra networks admins register: LoRAs, embeddings, ControlNets.

Each ``inspect_*`` reads only headers and small configs (never unpickles anything) and returns
what the registry shows, or raises :class:`ModelRefused` with a message that names the file and
says what is wrong. Upscalers are checked by :mod:`workers.imaging.upscalers`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from workers.common.safety import is_pickle_suffix
from workers.ml.models import ModelRefused, read_safetensors_header


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, or of a folder's .safetensors files in name order."""
    source = Path(path)
    files = [source] if source.is_file() else sorted(source.rglob("*.safetensors"))
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _safetensors_file(path: str | os.PathLike[str], what: str) -> Path:
    source = Path(path).expanduser()
    if is_pickle_suffix(source):
        raise ModelRefused(
            f"{source.name}: {source.suffix} files are Python pickles, which can run code when "
            f"loaded; register the {what} as .safetensors"
        )
    if source.is_dir():
        found = sorted(source.glob("*.safetensors"))
        if len(found) != 1:
            raise ModelRefused(f"{source}: expected one .safetensors {what} file in this folder")
        source = found[0]
    if not source.is_file():
        raise ModelRefused(f"{source}: no such file on the server")
    if source.suffix.lower() != ".safetensors":
        raise ModelRefused(f"{source.name}: the {what} must be a .safetensors file")
    return source


def tensor_shapes(file: Path) -> dict[str, list[int]]:
    """Tensor names and shapes, from the safetensors header alone."""
    return {k: list(shape) for k, (shape, _) in read_safetensors_header([Path(file)]).items()}


def count_parameters(shapes: dict[str, list[int]]) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def inspect_lora(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A kohya/A1111 or diffusers/PEFT LoRA file: rank, targets, family."""
    file = _safetensors_file(path, "LoRA")
    shapes = tensor_shapes(file)
    down = [k for k in shapes if "lora_down" in k or "lora_A" in k or "lora.down" in k]
    if not down:
        raise ModelRefused(
            f"{file.name}: no LoRA weights (lora_down / lora_A tensors) in this file; "
            "LyCORIS variants and full checkpoints are not LoRAs"
        )
    ranks = sorted({shapes[k][0] for k in down})
    sdxl = any(
        marker in k
        for k in shapes
        for marker in ("lora_te2_", "text_encoder_2.", "te2.", "conditioner.embedders.1")
    )
    return {
        "format": "kohya" if any(k.startswith("lora_unet_") for k in shapes) else "diffusers",
        "rank": ranks[-1],
        "tensors": len(shapes),
        "parameters": count_parameters(shapes),
        "text_encoder": any("te" in k.split(".")[0] or "text_encoder" in k for k in down),
        "family": "sdxl" if sdxl else "",
        "file": str(file),
    }


def inspect_embedding(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A textual-inversion embedding: A1111 (emb_params, string_to_param), SDXL (clip_l/clip_g)
    or diffusers ({token: vector}) layout; number of vectors and width."""
    file = _safetensors_file(path, "embedding")
    shapes = tensor_shapes(file)
    if "clip_l" in shapes and "clip_g" in shapes:
        vectors, width, family = shapes["clip_l"][0], shapes["clip_l"][-1], "sdxl"
    else:
        candidates = [
            k
            for k in shapes
            if k in ("emb_params",) or k.startswith("string_to_param") or len(shapes) == 1
        ]
        if not candidates or len(shapes[candidates[0]]) not in (1, 2):
            raise ModelRefused(
                f"{file.name}: not a textual-inversion embedding (expected emb_params, "
                "string_to_param, clip_l/clip_g or one vector tensor)"
            )
        shape = shapes[candidates[0]]
        vectors, width = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
        family = ""
    if vectors < 1 or vectors > 75:
        raise ModelRefused(f"{file.name}: {vectors} vectors is not a usable embedding")
    return {"vectors": vectors, "width": width, "family": family, "file": str(file)}


def inspect_controlnet(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A diffusers ControlNet folder with safetensors weights (pickles refused)."""
    folder = Path(path).expanduser()
    if folder.is_file():
        raise ModelRefused(
            f"{folder.name}: register a ControlNet as a diffusers folder (config.json and "
            "diffusion_pytorch_model.safetensors)"
        )
    config = folder / "config.json"
    if not config.is_file():
        raise ModelRefused(f"{folder}: not a diffusers ControlNet folder (no config.json)")
    try:
        spec = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise ModelRefused(f"{config}: unreadable ({exc})") from exc
    class_name = str(spec.get("_class_name", ""))
    if "ControlNet" not in class_name:
        raise ModelRefused(
            f"{folder}: config.json describes {class_name or 'no class'}, not a ControlNet"
        )
    pickles = [p.name for p in folder.iterdir() if is_pickle_suffix(p)]
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        hint = f" ({pickles[0]} is a pickle: convert it)" if pickles else ""
        raise ModelRefused(f"{folder}: no .safetensors weights{hint}")
    shapes: dict[str, list[int]] = {}
    for file in weights:
        shapes.update(tensor_shapes(file))
    cross = spec.get("cross_attention_dim")
    return {
        "class": class_name,
        "parameters": count_parameters(shapes),
        "cross_attention_dim": cross,
        "family": "sdxl" if spec.get("addition_embed_type") == "text_time" else "",
        "conditioning_channels": spec.get("conditioning_channels", 3),
    }
