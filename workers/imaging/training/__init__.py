"""Training on images: a UNet LoRA or a textual-inversion embedding from 5-50 captioned images.

`train_image_lora()` and `train_textual_inversion()` take a config, a base model (a diffusers
folder or a single .safetensors checkpoint of the SD 1.x/2.x family), the training images with
their captions and a run folder, and leave there:

    checkpoints/step-N/     resumable state (trained tensors, AdamW moments, generator, data
                            order; safetensors and JSON), each counted only once its COMPLETE
                            marker (file hashes, written last) is there
    lora/pytorch_lora_weights.safetensors    the LoRA (diffusers' save_lora_weights), or
    embedding/<name>.safetensors             the embedding (A1111's emb_params layout)
    result.json             what the function returned (a finished run is not trained again)

They report live loss, learning rate and steps/s through a Reporter, sample images of the sample
prompts every N steps as previews, resume from the newest complete checkpoint after a crash (on
CPU an interrupted run ends with the same weights as an uninterrupted one), and stop at the next
step when the Reporter asks (writing a checkpoint first).

    config.py             ImageLoraConfig, TextualInversionConfig: every knob with its default,
                          bounds and help (the schema the platform's forms and API derive from)
    base.py               the frozen base pipeline, precision, the denoising loss
    data.py               images → pixels → the VAE's latent distributions (once); data order
    loop.py               the shared loop: AdamW, schedule, metrics, samples, checkpoints, stop
    state.py              a checkpoint's files (safetensors + JSON, never pickle); lr schedule
    samples.py            sample prompts rendered by the platform's generator, as one preview
    lora.py               train_image_lora
    textual_inversion.py  train_textual_inversion

Pure code: no Django; torch, diffusers and peft are imported inside functions.
"""

from __future__ import annotations

from workers.imaging.training.config import (
    ConfigError,
    ImageLoraConfig,
    ImageTrainConfig,
    TextualInversionConfig,
    TrainingRefused,
)
from workers.imaging.training.data import Example, caption_with
from workers.imaging.training.loop import TrainResult
from workers.imaging.training.lora import LORA_FILE, train_image_lora
from workers.imaging.training.textual_inversion import EMBEDDING_KEY, train_textual_inversion

__all__ = [
    "EMBEDDING_KEY",
    "LORA_FILE",
    "ConfigError",
    "Example",
    "ImageLoraConfig",
    "ImageTrainConfig",
    "TextualInversionConfig",
    "TrainResult",
    "TrainingRefused",
    "caption_with",
    "train_image_lora",
    "train_textual_inversion",
]
