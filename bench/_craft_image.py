"""Image-LoRA training steps/s: the platform's training function beside a bare diffusers script
(the image half of bench/craft.py).

    .venv/bin/python -m bench._craft_image [--steps 200] [--rounds 2] [--model DIR] [--threads N]

The same model, images, captions, hyperparameters, steps and seed on both sides:

- platform: `workers.imaging.training.train_image_lora` (what a `craft.image_lora` job runs), with
  a Reporter that records each step, checkpoints every `--save-every` steps (default: none inside
  the run, as the bare script) and no sample prompts;
- bare: `bare_lora_run` below, diffusers' examples/text_to_image/train_text_to_image_lora.py
  written plainly (no accelerate, no torchvision: the same transforms by hand): components
  from_pretrained, everything frozen, `unet.add_adapter(LoraConfig(r, alpha=r, gaussian init,
  to_k/to_q/to_v/to_out.0))`, AdamW, a shuffled DataLoader, and at every step VAE encode ->
  latent sample x scaling factor, noise, timesteps, text encoder, UNet, MSE, backward, clip,
  step; `save_lora_weights` at the end.

Timed: the training loop (first step to last, both sides the same way: wall time between the
moment before the first step and the end of the last) and the whole call (load, data, loop, save).
Rounds alternate, bare first and last (B P B P B for --rounds 2) after one unmeasured warm-up of
each. The headline compares each side's best round (a burst of load from other processes on a
shared machine only ever slows a round down); the means of the rounds are in the dict too.
The model defaults to the tiny random pipeline (built here, 64 px); `--model` takes any SD 1.x
diffusers folder (the digits demo under var/models, an SD 1.5 folder on a GPU server).

The last line printed is one RESULT line; `measure_image_lora()` returns the numbers as a dict.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL = 0.95
TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


def make_images(folder: Path, n: int = 8, size: int = 96) -> list[tuple[Path, str]]:
    """`n` captioned pictures (a coloured disc on a plain ground, in different places)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(n):
        img = Image.new("RGB", (size, size + 16), (235, 230 - 10 * i, 210))
        draw = ImageDraw.Draw(img)
        x = 10 + 7 * i
        draw.ellipse((x, 20, x + 40, 60), fill=(200, 40 + 20 * i, 60))
        path = folder / f"disc-{i}.png"
        img.save(path)
        pairs.append((path, f"a red disc on a pale ground, picture {i}"))
    return pairs


# --------------------------------------------------------------------------- the bare script


def bare_lora_run(
    model_dir: Path,
    pairs: list[tuple[Path, str]],
    *,
    output_dir: Path,
    resolution: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    rank: int,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """The diffusers example's recipe with nothing of the platform around it."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from diffusers.training_utils import cast_training_params
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    started = time.perf_counter()
    torch.manual_seed(seed)
    noise_scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    tokenizer = CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    weight_dtype = torch.float16 if device == "cuda" else torch.float32
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGETS)
    )
    unet.to(device, dtype=weight_dtype)
    vae.to(device, dtype=weight_dtype)
    text_encoder.to(device, dtype=weight_dtype)  # type: ignore[arg-type]  # transformers types .to oddly
    if weight_dtype != torch.float32:
        cast_training_params(unet, dtype=torch.float32)
    lora_layers = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        lora_layers, lr=learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )

    def transform(image: Image.Image) -> torch.Tensor:
        # transforms.Resize(resolution, BILINEAR), CenterCrop(resolution), ToTensor, Normalize(0.5)
        w, h = image.size
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        array = np.asarray(image, dtype=np.float32) / 255.0
        return (torch.from_numpy(array).permute(2, 0, 1) - 0.5) / 0.5

    examples = [
        {
            "pixel_values": transform(Image.open(path).convert("RGB")),
            "input_ids": tokenizer(
                caption,
                max_length=tokenizer.model_max_length,
                padding="max_length",
                truncation=True,
                return_tensors="pt",
            ).input_ids[0],
        }
        for path, caption in pairs
    ]

    def collate_fn(batch):
        return {
            "pixel_values": torch.stack([e["pixel_values"] for e in batch]).float(),
            "input_ids": torch.stack([e["input_ids"] for e in batch]),
        }

    dataset: Any = examples  # a list is a map-style dataset
    loader: Any = torch.utils.data.DataLoader(
        dataset,
        shuffle=True,
        collate_fn=collate_fn,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    autocast = (
        torch.autocast("cuda", dtype=weight_dtype)
        if weight_dtype != torch.float32
        else torch.autocast("cpu", enabled=False)
    )
    unet.train()
    global_step, losses = 0, []
    loop_started = time.perf_counter()
    while global_step < steps:
        for batch in loader:
            pixel_values = batch["pixel_values"].to(device, dtype=weight_dtype)
            with autocast:
                latents = vae.encode(pixel_values).latent_dist.sample()
                latents = latents * vae.config.scaling_factor
                noise = torch.randn_like(latents)
                timesteps = torch.randint(
                    0,
                    noise_scheduler.config.num_train_timesteps,
                    (latents.shape[0],),
                    device=latents.device,
                ).long()
                noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
                encoder_hidden_states = text_encoder(
                    batch["input_ids"].to(device), return_dict=False
                )[0]
                if noise_scheduler.config.prediction_type == "v_prediction":
                    target = noise_scheduler.get_velocity(latents, noise, timesteps)
                else:
                    target = noise
                model_pred = unet(
                    noisy_latents, timesteps, encoder_hidden_states, return_dict=False
                )[0]
                loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lora_layers, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
            global_step += 1
            if global_step >= steps:
                break
    if device == "cuda":
        torch.cuda.synchronize()
    loop_seconds = time.perf_counter() - loop_started
    unet = unet.to(torch.float32)
    StableDiffusionPipeline.save_lora_weights(
        save_directory=output_dir,
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        safe_serialization=True,
    )
    return {
        "loop_seconds": loop_seconds,
        "total_seconds": time.perf_counter() - started,
        "steps_per_second": steps / loop_seconds,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
    }


# --------------------------------------------------------------------------- the platform side


def platform_lora_run(
    model_dir: Path,
    pairs: list[tuple[Path, str]],
    *,
    output_dir: Path,
    resolution: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    rank: int,
    seed: int,
    device: str,
    save_every: int | None = None,
) -> dict[str, Any]:
    """`train_image_lora`, timed the same way: from just before its first step (the log line it
    writes after setting up) to the end of its last step."""
    from workers.imaging.training import Example, ImageLoraConfig, train_image_lora
    from workers.ml.reporting import RecordingReporter

    class Clock(RecordingReporter):
        loop_started: float | None = None
        last_step: float | None = None

        def log(self, message: str, level: str = "info") -> None:
            super().log(message, level)
            if message.startswith("LoRA rank"):
                self.loop_started = time.perf_counter()

        def step(self, step, total, metrics=None):
            if device == "cuda" and step >= total:
                import torch

                torch.cuda.synchronize()
            self.last_step = time.perf_counter()
            super().step(step, total, metrics)

    config = ImageLoraConfig(
        resolution=resolution,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        rank=rank,
        seed=seed,
        save_every=save_every or steps + 1,
        log_every=10,
    )
    clock = Clock()
    started = time.perf_counter()
    result = train_image_lora(
        config,
        base_model_dir=model_dir,
        examples=[Example(path, caption) for path, caption in pairs],
        output_dir=output_dir,
        reporter=clock,
        device=device,
    )
    total = time.perf_counter() - started
    assert result.status == "succeeded" and clock.loop_started and clock.last_step
    loop = clock.last_step - clock.loop_started
    tail = [m["loss"] for _, m in clock.metric_steps][-2:]
    return {
        "loop_seconds": loop,
        "total_seconds": total,
        "steps_per_second": steps / loop,
        "final_loss": sum(tail) / len(tail),
    }


# --------------------------------------------------------------------------- the comparison


def measure_image_lora(
    *,
    model: str | None = None,
    steps: int = 200,
    rounds: int = 2,
    resolution: int | None = None,
    batch_size: int = 4,
    learning_rate: float = 1e-4,
    rank: int = 4,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    save_every: int | None = None,
) -> dict[str, Any]:
    """{"environment", "settings", "bare": {...}, "platform": {...}, "ratio", "mean_ratio", "goal",
    "met"}: steps/s of each side's training loop (best round, mean, each round), whole-call
    seconds and the mean loss of the last steps; `ratio` = platform / bare of the best rounds."""
    import diffusers
    import torch

    from workers.imaging.demo_model import build_tiny_pipeline

    if threads:
        torch.set_num_threads(threads)
    resolved = "cuda" if device == "auto" and torch.cuda.is_available() else device
    resolved = "cpu" if resolved == "auto" else resolved
    work = Path(tempfile.mkdtemp(prefix="bench-craft-image-"))
    try:
        model_dir = Path(model) if model else build_tiny_pipeline(work / "tiny-sd", seed=0)
        size = resolution or (64 if model is None else 512)
        pairs = make_images(work / "images")
        settings: dict[str, Any] = dict(
            resolution=size,
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            rank=rank,
            seed=seed,
            device=resolved,
        )
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "platform": []}

        def once(side: str, index: int) -> dict[str, Any]:
            out = work / f"{side}-{index}"
            if side == "bare":
                return bare_lora_run(model_dir, pairs, output_dir=out, **settings)
            return platform_lora_run(
                model_dir, pairs, output_dir=out, save_every=save_every, **settings
            )

        warm = {**settings, "steps": min(steps, 10)}
        bare_lora_run(model_dir, pairs, output_dir=work / "warm-bare", **warm)
        platform_lora_run(model_dir, pairs, output_dir=work / "warm-platform", **warm)
        order = ["bare"] + ["platform", "bare"] * rounds
        for index, side in enumerate(order):
            runs[side].append(once(side, index))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def summary(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "steps_per_second": max(r["steps_per_second"] for r in items),
            "mean_steps_per_second": sum(r["steps_per_second"] for r in items) / len(items),
            "rounds_steps_per_second": [round(r["steps_per_second"], 2) for r in items],
            "loop_seconds": sum(r["loop_seconds"] for r in items) / len(items),
            "total_seconds": sum(r["total_seconds"] for r in items) / len(items),
            "final_loss": sum(r["final_loss"] for r in items) / len(items),
        }

    bare, plat = summary(runs["bare"]), summary(runs["platform"])
    ratio = plat["steps_per_second"] / bare["steps_per_second"]
    mean_ratio = plat["mean_steps_per_second"] / bare["mean_steps_per_second"]
    return {
        "environment": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "device": resolved,
            "gpu": torch.cuda.get_device_name() if resolved == "cuda" else None,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "settings": {
            **{k: v for k, v in settings.items() if k != "device"},
            "model": model or "tiny random SD pipeline (built here)",
            "images": len(pairs),
            "rounds": rounds,
            "save_every": save_every,
        },
        "bare": bare,
        "platform": plat,
        "ratio": ratio,
        "mean_ratio": mean_ratio,
        "goal": GOAL,
        "met": ratio >= GOAL,
    }


def headline(result: dict[str, Any]) -> str:
    s, b, p = result["settings"], result["bare"], result["platform"]
    return (
        f"RESULT craft_image_lora platform {p['steps_per_second']:.2f} steps/s vs bare diffusers "
        f"{b['steps_per_second']:.2f} steps/s = {result['ratio']:.2f}x (goal >= {GOAL}x: "
        f"{'met' if result['met'] else 'NOT met'}); {s['steps']} steps, batch {s['batch_size']}, "
        f"{s['resolution']} px, rank {s['rank']}, {result['environment']['device']}; best of "
        f"{len(p['rounds_steps_per_second'])} vs {len(b['rounds_steps_per_second'])} rounds "
        f"(means: {result['mean_ratio']:.2f}x); whole call {p['total_seconds']:.1f} s vs "
        f"{b['total_seconds']:.1f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="an SD 1.x diffusers folder (default: tiny)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--save-every", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON too")
    args = parser.parse_args()
    result = measure_image_lora(
        model=args.model,
        steps=args.steps,
        rounds=args.rounds,
        resolution=args.resolution,
        batch_size=args.batch_size,
        rank=args.rank,
        threads=args.threads,
        device=args.device,
        save_every=args.save_every,
    )
    if args.json:
        print(json.dumps(result, indent=1))
    print(headline(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
