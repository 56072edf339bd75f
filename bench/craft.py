"""Model-craft benchmark (issue 18): image-LoRA training against a bare diffusers script, and
quantized against original text models.

    .venv/bin/python bench/craft.py [--image-steps 200] [--rounds 2] [--models-dir var/models]

- Image LoRA (bench/_craft_image.py): steps/s of the platform's training function
  (workers/imaging/training) beside a plain diffusers LoRA training script (the diffusers
  example's recipe written out) with the same model, images, hyperparameters, steps and seed,
  alternating rounds. Goal: >= 0.95x.
- Quantization (bench/_craft_quant.py): for the tiny Llama and SmolLM2-135M-Instruct (when it
  is already converted under --models-dir), each variant (original fp32, int8 weight-only, int8
  dynamic) on the same prompts: tokens/s, perplexity on the same texts, top-1 agreement with the
  original, size on disk. A report, no goal.

The last line printed is one RESULT line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._craft_image import GOAL, headline, measure_image_lora  # noqa: E402
from bench._craft_quant import measure_quantization  # noqa: E402


def _quant_lines(q: dict) -> tuple[list[str], str]:
    lines, short = [], []
    for model, variants in q["models"].items():
        lines.append(f"  {model}:")
        for name, v in variants.items():
            extra = ""
            if "top1_agreement" in v:
                extra = f", top-1 agreement {100 * v['top1_agreement']:.1f}%"
            if "speedup" in v:
                extra += f", {v['speedup']:.2f}x the original's tokens/s"
            lines.append(
                f"    {name:<18} {v['tokens_per_second']:8.1f} tok/s  perplexity "
                f"{v['perplexity']:8.2f}  {v['size_bytes'] / 1e6:8.1f} MB{extra}"
            )
            if "speedup" in v:
                short.append(
                    f"{model} {name} {v['speedup']:.2f}x tok/s, ppl "
                    f"{variants[next(iter(variants))]['perplexity']:.2f}->{v['perplexity']:.2f}"
                )
    return lines, "; ".join(short)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image-steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models-dir", default=str(ROOT / "var" / "models"))
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per prompt (quantization)")
    args = ap.parse_args(argv)

    image = measure_image_lora(steps=args.image_steps, rounds=args.rounds)
    print(headline(image).removeprefix("RESULT "), flush=True)
    quant = measure_quantization(
        models_dir=args.models_dir, new_tokens=args.tokens, rounds=args.rounds
    )
    lines, short = _quant_lines(quant)
    print("Quantized vs original, same prompts and texts (report):")
    print("\n".join(lines))
    print(
        f"RESULT craft image-lora {image['ratio']:.2f}x steps/s vs bare diffusers (goal >= {GOAL}) "
        f"| quantization (report): {short}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
