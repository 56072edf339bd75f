"""Image LoRA training: diffusers' train_text_to_image_lora recipe on a platform run folder.

LoRA matrices on the UNet's attention projections (to_q, to_k, to_v, to_out.0), Gaussian init,
AdamW, MSE against the noise; the captions (with the trigger word written first) encoded once by
the frozen text encoder, the images once by the VAE (data.LatentPool). The result is saved with
``save_lora_weights`` as one .safetensors file that ``pipe.load_lora_weights`` reads in a plain
diffusers script, and that the platform uses with ``<lora:name:weight>``; alpha/rank is folded
into the up matrices, so every loader, whatever it assumes for alpha, applies the same update.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workers.imaging.training.base import Base, denoising_loss, load_base
from workers.imaging.training.config import ImageLoraConfig, TrainingRefused
from workers.imaging.training.data import Example, LatentPool, caption_with, load_pixels
from workers.imaging.training.loop import TrainResult, finished_result, train_loop
from workers.ml.checkpoints import CheckpointStore
from workers.ml.reporting import NullReporter, Reporter

__all__ = ["LORA_FILE", "LORA_TARGETS", "train_image_lora"]

LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
LORA_FILE = "pytorch_lora_weights.safetensors"
ADAPTER = "default"


def encode_captions(base: Base, captions: Sequence[str]) -> Any:
    """The frozen text encoder's hidden states of each caption, [n, 77, width] (CPU, fp32)."""
    import torch

    tokenizer, encoder = base.pipe.tokenizer, base.pipe.text_encoder
    ids = tokenizer(
        list(captions),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        return encoder(ids.to(base.device), return_dict=False)[0].float().cpu()


class LoraTrainee:
    """The UNet's LoRA matrices (fp32 leaves, whatever the base precision)."""

    def __init__(self, base: Base, config: ImageLoraConfig, pool: LatentPool, hidden: Any) -> None:
        import torch
        from peft import LoraConfig

        self.base, self.config, self.pool, self.hidden = base, config, pool, hidden
        unet = base.pipe.unet
        unet.add_adapter(
            LoraConfig(
                r=config.rank,
                lora_alpha=config.lora_alpha,
                init_lora_weights="gaussian",
                target_modules=list(LORA_TARGETS),
            ),
            adapter_name=ADAPTER,
        )
        self.names: list[str] = []
        self.params: list[Any] = []
        for name, param in unet.named_parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.float32)
                self.names.append(name)
                self.params.append(param)
        if not self.params:
            raise TrainingRefused(
                "this model's UNet has no attention projections (to_q, to_k, to_v, to_out.0) "
                "to put a LoRA on"
            )

    def loss(self, indices: Sequence[int], generator: Any) -> Any:
        latents = self.pool.draw(indices, generator)
        hidden = self.hidden[list(indices)]
        return denoising_loss(self.base, latents, hidden.to(self.base.device), generator)

    def trained(self) -> dict[str, Any]:
        return dict(zip(self.names, self.params, strict=True))

    def load_trained(self, tensors: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for name, param in zip(self.names, self.params, strict=True):
                param.copy_(tensors[name].to(param.device, param.dtype))

    def after_step(self) -> None:
        pass

    def samples(self, prompts: Sequence[str]) -> list[Any]:
        from workers.imaging.training.samples import render_samples

        c = self.config
        return render_samples(
            self.base.pipe,
            prompts,
            resolution=c.resolution,
            steps=c.sample_steps,
            cfg_scale=c.sample_cfg_scale,
            seed=c.seed,
        )

    def lora_state_dict(self) -> dict[str, Any]:
        """The LoRA in diffusers' format (``unet.…lora_A/B.weight``), alpha/rank folded into B."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        state = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(self.base.pipe.unet, adapter_name=ADAPTER)
        )
        scale = self.config.lora_alpha / self.config.rank
        out = {}
        for key, value in state.items():
            value = value.detach().float().cpu()
            if scale != 1.0 and ("lora_B" in key or "lora.up" in key):
                value = value * scale
            out[key] = value.contiguous()
        return out

    def export(self, folder: Path) -> Path:
        from diffusers import StableDiffusionPipeline

        target = folder / "lora"
        target.mkdir(parents=True, exist_ok=True)
        StableDiffusionPipeline.save_lora_weights(
            save_directory=target,
            unet_lora_layers=self.lora_state_dict(),
            weight_name=LORA_FILE,
            safe_serialization=True,
        )
        return target / LORA_FILE


def train_image_lora(
    config: ImageLoraConfig,
    *,
    base_model_dir: str | os.PathLike[str],
    examples: Sequence[Example],
    output_dir: str | os.PathLike[str],
    reporter: Reporter | None = None,
    checkpoints: CheckpointStore | None = None,
    device: str = "auto",
    single_file_config: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a UNet LoRA on `examples`; resume from `checkpoints` (default: output_dir/checkpoints).

    Leaves ``output_dir/lora/pytorch_lora_weights.safetensors`` and ``result.json``. A run that
    already finished there returns its result without training again; when the reporter asks to
    stop, a checkpoint is written and the result's status is ``cancelled``.
    """
    import torch

    output = Path(output_dir)
    reporter = reporter or NullReporter()
    done = finished_result(output)
    if done is not None:
        return done
    store = checkpoints or CheckpointStore(output / "checkpoints")
    base = load_base(base_model_dir, config, device=device, single_file_config=single_file_config)
    captions = [caption_with(config.trigger_word, e.caption) for e in examples]
    pool = LatentPool(
        base.pipe.vae, load_pixels(examples, config.resolution), flip=config.random_flip
    )
    hidden = encode_captions(base, captions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the LoRA's initial weights
        trainee = LoraTrainee(base, config, pool, hidden)
    reporter.log(
        f"LoRA rank {config.rank} on {len(trainee.params) // 2} UNet projections "
        f"({sum(p.numel() for p in trainee.params):,} parameters), {len(examples)} images at "
        f"{config.resolution} px, {config.steps} steps on {base.device.type}"
    )
    return train_loop(
        config, trainee, size=len(examples), output_dir=output, reporter=reporter, checkpoints=store
    )
