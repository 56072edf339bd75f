"""Export a diffusers Stable Diffusion 1.x pipeline as one original (LDM/A1111) checkpoint file.

A test helper: it makes the kind of ``.safetensors`` file users download (``model.diffusion_model.*``
for the UNet, ``first_stage_model.*`` for the VAE, ``cond_stage_model.transformer.*`` for the CLIP
text encoder), so that ``load_pipeline``'s single-file path can be tested offline.

The renaming follows diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py``
(Apache-2.0, https://github.com/huggingface/diffusers), which is not part of the installed package.
That script hard-codes SD 1.x's shape (4 UNet blocks of 2 layers, 4 VAE blocks); the maps here are
the same string replacements, generated for the model's own block count, layers per block and
attention placement, so the tiny test pipeline converts too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["export_ldm_checkpoint", "ldm_state_dict"]

# (stable-diffusion, HF diffusers) pairs, as in the script.
_UNET_MAP = [
    ("time_embed.0.weight", "time_embedding.linear_1.weight"),
    ("time_embed.0.bias", "time_embedding.linear_1.bias"),
    ("time_embed.2.weight", "time_embedding.linear_2.weight"),
    ("time_embed.2.bias", "time_embedding.linear_2.bias"),
    ("input_blocks.0.0.weight", "conv_in.weight"),
    ("input_blocks.0.0.bias", "conv_in.bias"),
    ("out.0.weight", "conv_norm_out.weight"),
    ("out.0.bias", "conv_norm_out.bias"),
    ("out.2.weight", "conv_out.weight"),
    ("out.2.bias", "conv_out.bias"),
]
_UNET_RESNET_MAP = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
]
_VAE_ATTENTION_MAP = [
    ("norm.", "group_norm."),
    ("q.", "to_q."),
    ("k.", "to_k."),
    ("v.", "to_v."),
    ("proj_out.", "to_out.0."),
]


def _has(keys: set[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _unet_layer_map(keys: set[str], n_blocks: int, layers: int) -> list[tuple[str, str]]:
    """The script's ``unet_conversion_map_layer`` for ``n_blocks`` blocks of ``layers`` layers.

    LDM numbers the UNet's input blocks 1.. (``layers`` resnets, then a downsampler, per block)
    and its output blocks 0.. (``layers + 1`` resnets per block, the last one carrying the
    upsampler after the attention when there is one).
    """
    pairs: list[tuple[str, str]] = []
    per = layers + 1
    for i in range(n_blocks):
        for j in range(layers):
            pairs.append((f"input_blocks.{per * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if _has(keys, f"down_blocks.{i}.attentions.{j}."):
                pairs.append(
                    (f"input_blocks.{per * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}.")
                )
        for j in range(per):
            pairs.append((f"output_blocks.{per * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if _has(keys, f"up_blocks.{i}.attentions.{j}."):
                pairs.append((f"output_blocks.{per * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n_blocks - 1:
            pairs.append(
                (f"input_blocks.{per * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv.")
            )
            slot = 2 if _has(keys, f"up_blocks.{i}.attentions.") else 1
            pairs.append(
                (f"output_blocks.{per * i + layers}.{slot}.", f"up_blocks.{i}.upsamplers.0.")
            )
    pairs.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return pairs


def _convert_unet(state: dict[str, Any], n_blocks: int, layers: int) -> dict[str, Any]:
    # The script's convert_unet_state_dict: the order of the three passes matters.
    mapping = {k: k for k in state}
    for sd_name, hf_name in _UNET_MAP:
        if hf_name in mapping:
            mapping[hf_name] = sd_name
    for k, v in mapping.items():
        if "resnets" in k:
            for sd_part, hf_part in _UNET_RESNET_MAP:
                v = v.replace(hf_part, sd_part)
            mapping[k] = v
    layer_map = _unet_layer_map(set(state), n_blocks, layers)
    for k, v in mapping.items():
        for sd_part, hf_part in layer_map:
            v = v.replace(hf_part, sd_part)
        mapping[k] = v
    return {v: state[k] for k, v in mapping.items()}


def _vae_map(n_blocks: int) -> list[tuple[str, str]]:
    """The script's ``vae_conversion_map`` for ``n_blocks`` blocks (SD has 4)."""
    pairs = [
        ("nin_shortcut", "conv_shortcut"),
        ("norm_out", "conv_norm_out"),
        ("mid.attn_1.", "mid_block.attentions.0."),
    ]
    last = n_blocks - 1
    for i in range(n_blocks):
        for j in range(2):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < last:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{last - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        # Decoder blocks are numbered the other way round in LDM.
        for j in range(3):
            pairs.append(
                (f"decoder.up.{last - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.")
            )
    for i in range(2):
        pairs.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    return pairs


def _convert_vae(state: dict[str, Any], n_blocks: int) -> dict[str, Any]:
    mapping = {k: k for k in state}
    vae_map = _vae_map(n_blocks)
    for k, v in mapping.items():
        for sd_part, hf_part in vae_map:
            v = v.replace(hf_part, sd_part)
        mapping[k] = v
    for k, v in mapping.items():
        if "attentions" in k:
            for sd_part, hf_part in _VAE_ATTENTION_MAP:
                v = v.replace(hf_part, sd_part)
            mapping[k] = v
    out = {v: state[k] for k, v in mapping.items()}
    # LDM's VAE attention uses 1×1 convolutions where diffusers has linear layers.
    for k, v in out.items():
        if any(f"mid.attn_1.{name}.weight" in k for name in ("q", "k", "v", "proj_out")):
            if v.ndim == 2:
                out[k] = v.reshape(*v.shape, 1, 1)
    return out


def _convert_clip(state: dict[str, Any]) -> dict[str, Any]:
    # transformers v5 flattened CLIPTextModel (no ``text_model.``); original files have it.
    return {(k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in state.items()}


def ldm_state_dict(pipe: Any) -> dict[str, Any]:
    """An SD 1.x diffusers pipeline's weights under the original checkpoint's names."""
    unet_config = pipe.unet.config
    unet = _convert_unet(
        pipe.unet.state_dict(), len(unet_config.block_out_channels), unet_config.layers_per_block
    )
    vae = _convert_vae(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels))
    clip = _convert_clip(pipe.text_encoder.state_dict())
    out: dict[str, Any] = {}
    for prefix, part in (
        ("model.diffusion_model.", unet),
        ("first_stage_model.", vae),
        ("cond_stage_model.transformer.", clip),
    ):
        out.update({prefix + k: v.detach().cpu().contiguous() for k, v in part.items()})
    return out


def export_ldm_checkpoint(pipe: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``pipe`` as one original-layout ``.safetensors`` checkpoint; return its path."""
    from safetensors.torch import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(ldm_state_dict(pipe), str(target))
    return target
