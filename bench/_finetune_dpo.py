"""DPO optimizer steps/s: the platform's `train_dpo` beside a bare trl DPOTrainer script.

    .venv/bin/python -m bench._finetune_dpo [--steps 60] [--pairs 64] [--rounds 3]

Both sides train the same built-in tiny Llama (or `--model DIR`) on the same pairs (rendered
once, as train_dpo renders them), with the same LoRA, DPOConfig hyperparameters, steps, seed and
checkpoint cadence; the bare side has nothing of the platform around it (no Reporter, markers,
renamed metrics, eval before/after, run folder). Steps/s is optimizer steps divided by the wall
time of `trainer.train()` on each side (train_dpo's `train_seconds`). The sides alternate,
round after round, so a machine getting busier hurts both alike; the headline is the ratio of
the medians of runs without a checkpoint inside them (the training loop; goal, issue 17:
platform >= 0.97x bare). A checkpoint is a fixed cost, reported as one: the extra milliseconds
per checkpoint of runs that save every `--ckpt-every` steps (the platform's includes the COMPLETE
marker that makes a crash resumable: hashes and fsync of every file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL = 0.97


def make_pairs(n: int) -> list[dict[str, str]]:
    names = [f"guest {i}" for i in range(n)]
    return [
        {
            "prompt": f"Say something to {name}.",
            "chosen": f" Good luck, {name}! Have a nice day.",
            "rejected": f" Bad luck, {name}.",
        }
        for name in names
    ]


def params(steps: int, save_steps: int = 0) -> dict[str, Any]:
    return {
        "max_steps": steps,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "warmup_steps": 0,
        "logging_steps": 10,
        "save_steps": save_steps or max(steps // 2, 1),
        "learning_rate": 5e-3,
        "max_seq_length": 96,
        "max_prompt_length": 48,
        "eval_fraction": 0.0,
        "seed": 11,
    }


def platform_run(base: Path, pairs: list[dict[str, str]], p: dict[str, Any]) -> float:
    """Steps/s of workers.ml.preference.train_dpo (a fresh run folder each time)."""
    from workers.ml.preference import DpoConfig, train_dpo
    from workers.ml.reporting import RecordingReporter

    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as out:
        result = train_dpo(
            DpoConfig.from_dict(p),
            base_model_dir=base,
            train_rows=pairs,
            output_dir=out,
            reporter=RecordingReporter(),
        )
    assert result.status == "succeeded", result.status
    return result.global_step / result.metrics["train_seconds"]


def bare_run(base: Path, rendered: list[dict[str, str]], p: dict[str, Any]) -> float:
    """Steps/s of a plain trl script: from_pretrained, LoraConfig, DPOConfig, DPOTrainer.train()."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import DPOConfig, DPOTrainer

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.bfloat16 if cuda else torch.float32
    ).to("cuda" if cuda else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-dpo-bare-") as out:
        args = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=p["per_device_train_batch_size"],
            gradient_accumulation_steps=p["gradient_accumulation_steps"],
            warmup_steps=p["warmup_steps"],
            max_steps=p["max_steps"],
            learning_rate=p["learning_rate"],
            lr_scheduler_type="linear",
            logging_steps=p["logging_steps"],
            save_strategy="steps",
            save_steps=p["save_steps"],
            seed=p["seed"],
            data_seed=p["seed"],
            bf16=cuda,
            use_cpu=not cuda,
            gradient_checkpointing=False,
            report_to="none",
            disable_tqdm=True,
            beta=0.1,
            max_length=p["max_seq_length"],
        )
        lora = LoraConfig(
            r=8,
            lora_alpha=32,
            target_modules=["q_proj", "v_proj"],
            lora_dropout=0.1,
            task_type="CAUSAL_LM",
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rendered),
            processing_class=tokenizer,
            peft_config=lora,
        )
        trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return trainer.state.global_step / seconds


def measure(
    *, steps: int = 100, pairs: int = 64, rounds: int = 3, model: str = "", ckpt_every: int = 0
) -> dict[str, Any]:
    """The figures: steps/s of both sides without a checkpoint inside the run (the training
    loop), and each side's fixed cost per checkpoint (ms: the run with checkpoints every
    `ckpt_every` steps minus the run without, per checkpoint), medians over `rounds`."""
    import torch
    from transformers import AutoTokenizer

    from workers.ml.preference.data import datasets_quiet, render_pairs

    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # tiny matrices: threads only add contention on CPU
    datasets_quiet()
    ckpt_every = ckpt_every or max(steps // 4, 1)
    n_ckpt = (steps - 1) // ckpt_every  # checkpoints before the last step
    with tempfile.TemporaryDirectory(prefix="bench-dpo-model-") as scratch:
        if model:
            base = Path(model)
        else:
            from workers.ml.models import build_tiny_llama

            base = build_tiny_llama(Path(scratch) / "tiny-llama", seed=0)
        rows = make_pairs(pairs)
        loop = params(steps, steps + 1)  # no checkpoint inside the run
        saving = params(steps, ckpt_every)
        rendered = render_pairs(
            rows, AutoTokenizer.from_pretrained(base), max_prompt_length=loop["max_prompt_length"]
        ).pairs
        platform_run(base, rows[:8], {**loop, "max_steps": 2})  # warm-up: imports, first kernels
        ours, bare, ours_ck, bare_ck = [], [], [], []
        for _ in range(rounds):
            ours.append(platform_run(base, rows, loop))
            bare.append(bare_run(base, rendered, loop))
            if n_ckpt:
                ours_ck.append(platform_run(base, rows, saving))
                bare_ck.append(bare_run(base, rendered, saving))
    med = statistics.median

    def per_ckpt(with_ck: list[float], without: list[float]) -> float:
        if not n_ckpt:
            return 0.0
        return (steps / med(with_ck) - steps / med(without)) / n_ckpt * 1000

    return {
        "platform": med(ours),
        "bare": med(bare),
        "ratio": med(ours) / med(bare),
        "checkpoints": n_ckpt,
        "ckpt_ms_platform": per_ckpt(ours_ck, ours),
        "ckpt_ms_bare": per_ckpt(bare_ck, bare),
        "steps": steps,
        "pairs": pairs,
        "rounds": rounds,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def headline(r: dict[str, Any]) -> str:
    return (
        f"dpo steps/s ratio={r['ratio']:.3f} (goal >= {GOAL}) [platform {r['platform']:.2f}, "
        f"bare trl {r['bare']:.2f} steps/s] checkpoint fixed cost platform "
        f"{r['ckpt_ms_platform']:.0f} ms vs bare {r['ckpt_ms_bare']:.0f} ms (report)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--ckpt-every", type=int, default=0, help="checkpoint cadence of the fixed-cost runs"
    )
    parser.add_argument("--model", default="", help="a model folder (default: the tiny Llama)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    args = parser.parse_args(argv)
    r = measure(
        steps=args.steps,
        pairs=args.pairs,
        rounds=args.rounds,
        model=args.model,
        ckpt_every=args.ckpt_every,
    )
    print(
        f"DPO: {r['steps']} steps, {r['pairs']} pairs, {r['rounds']} rounds alternating, "
        f"{r['device']}; steps/s without a checkpoint inside the run: platform "
        f"{r['platform']:.2f}, bare {r['bare']:.2f}; per checkpoint ({r['checkpoints']} a run): "
        f"platform {r['ckpt_ms_platform']:.0f} ms (Trainer save + COMPLETE marker: file hashes, "
        f"fsync), bare {r['ckpt_ms_bare']:.0f} ms (Trainer save)"
    )
    if args.json:
        print(json.dumps(r))
    print("RESULT " + headline(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
