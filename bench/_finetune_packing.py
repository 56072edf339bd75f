"""Sequence packing against the bare unpacked script: useful tokens/s and eval loss (issue 17).

    .venv/bin/python -m bench._finetune_packing [--steps 600] [--rounds 2] [--rows 256]

`packing_bench()` trains the tiny Llama (workers.ml.models.build_tiny_llama, built once, before
anything is timed) on the seed's QA rows (`### 问题:…\\n### 回答:…`, bench._finetune_bare.demo_rows:
the platform ships no demo dataset of its own) with the platform's default recipe (every
LoraFinetuneConfig default: batch 4 x accumulation 4, lr 2e-4, 100 warm-up steps, dropout 0.1,
seed 42, eval share 0.1, eval every 50 steps) except the step count, on both sides:

- packed: the platform's own `workers.ml.finetune.train_lora` with `packing=True` (one packed
  row of 16 examples per optimizer step). Its figure is the run's own `train_tokens_per_second`:
  real tokens / training time (the evaluations it makes during training left out).
- bare: a plain transformers script, unpacked: from_pretrained, LoraConfig, Trainer with dynamic
  padding (DataCollatorForSeq2Seq), the same prompt masking, batch, accumulation, lr, schedule,
  steps and seed; real (non-padding) tokens handed to the loop / wall time of `trainer.train()`.

Both train on the same rows and evaluate on the same held-out rows (the platform's seeded split),
in this one process with one torch thread, alternating sides (bare, packed, bare, packed...) after
an untimed warm-up of each, so drift in a shared machine's load mostly cancels out. Returns
{ratio (packed / bare tokens/s), eval_loss_packed, eval_loss_bare, diff_pct, ...}; goals: ratio
>= 1.5 and the eval losses within 2 %. Run alone, it prints one RESULT line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._finetune_bare import DEFAULT_TEMPLATE, demo_rows  # noqa: E402

# Sentences of a team's support/knowledge QA set (zh), from which `qa_rows` draws answers of one
# to eight sentences and questions of one or two clauses: the spread of lengths real QA rows have
# (a one-line fact next to a paragraph of steps), unlike demo_rows' same-length sums.
_TOPICS = ("血压", "发票", "退款", "密码", "快递", "会员", "合同", "数据集", "显卡", "报销")
_ASKS = (
    "{t}是什么?",
    "怎么处理{t}的问题?",
    "{t}出了错误, 我应该先检查什么, 然后联系谁?",
    "为什么我的{t}一直没有更新?",
    "请详细说明{t}的流程, 包括需要准备的材料和大概的时间。",
)
_SENTENCES = (
    "请先登录账户, 在设置页面找到{t}一栏。",
    "一般情况下{t}会在三个工作日内完成。",
    "如果超过时间仍未完成, 请保留截图并联系客服。",
    "{t}的记录可以在历史页面按日期筛选。",
    "注意: 修改{t}之后需要重新确认一次。",
    "团队管理员可以为所有成员统一设置{t}。",
    "部分地区的{t}规则不同, 以当地规定为准。",
    "系统会发送一封邮件通知你结果。",
)


def qa_rows(n: int, seed: int = 7) -> list[dict[str, str]]:
    """`n` QA rows of varied length (see _SENTENCES), seeded."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        t = rng.choice(_TOPICS)
        k = min(8, max(1, int(rng.expovariate(1 / 2.5)) + 1))
        answer = "".join(rng.choice(_SENTENCES).format(t=t) for _ in range(k))
        rows.append({"question": rng.choice(_ASKS).format(t=t), "answer": answer})
    return rows


GOAL_RATIO = 1.5
GOAL_DIFF_PCT = 2.0
STEPS = 600  # x 2 rounds: ~30 s a side (bare ~25k tokens/s, one thread, 2-core machine)


def packing_bench(
    *,
    steps: int = STEPS,
    rounds: int = 2,
    rows: int = 256,
    model_dir: str | os.PathLike[str] | None = None,
    threads: int = 1,
    data: str = "qa",
) -> dict[str, Any]:
    """Packed platform training vs the bare unpacked script (module doc); the figures. `data`:
    "qa" (qa_rows: varied lengths, as real QA sets) or "sums" (demo_rows: all one length)."""
    import torch

    from workers.ml.finetune import LoraFinetuneConfig
    from workers.ml.finetune.data import split_eval

    torch.set_num_threads(threads)
    recipe = LoraFinetuneConfig()
    source = qa_rows(rows) if data == "qa" else demo_rows(rows)
    train_rows, eval_rows = split_eval(source, recipe.eval_fraction, recipe.seed)
    params = {"max_steps": steps}
    with tempfile.TemporaryDirectory(prefix="atelier-packbench-") as tmp:
        if model_dir is None:
            from workers.ml.models import build_tiny_llama

            model_dir = build_tiny_llama(Path(tmp) / "tiny-llama", seed=0)
        # Untimed warm-up: imports, first model load, kernels, allocator.
        warm = {"max_steps": 3}
        bare_side(model_dir, train_rows, eval_rows, warm, Path(tmp) / "warm-bare")
        packed_side(model_dir, train_rows, eval_rows, warm, Path(tmp) / "warm-packed")
        bares, packs = [], []
        for n in range(rounds):
            bares.append(bare_side(model_dir, train_rows, eval_rows, params, Path(tmp) / f"b{n}"))
            packs.append(packed_side(model_dir, train_rows, eval_rows, params, Path(tmp) / f"p{n}"))
    bare_tps = sum(r["tokens_per_second"] for r in bares) / len(bares)
    packed_tps = sum(r["tokens_per_second"] for r in packs) / len(packs)
    loss_p, loss_b = packs[-1]["eval_loss"], bares[-1]["eval_loss"]
    return {
        "ratio": round(packed_tps / bare_tps, 3),
        "eval_loss_packed": loss_p,
        "eval_loss_bare": loss_b,
        "diff_pct": round(100 * abs(loss_p - loss_b) / loss_b, 3),
        "tokens_per_second_packed": round(packed_tps, 1),
        "tokens_per_second_bare": round(bare_tps, 1),
        "eval_loss_before_packed": packs[-1]["eval_loss_before"],
        "eval_loss_before_bare": bares[-1]["eval_loss_before"],
        "seconds_packed": [r["train_seconds"] for r in packs],
        "seconds_bare": [r["train_seconds"] for r in bares],
        "tokens": packs[-1]["tokens"],
        "padding_pct_bare": round(100 * (1 - bares[-1]["tokens"] / bares[-1]["positions"]), 1),
        "data": data,
        "steps": steps,
        "rows": f"{len(train_rows)} train + {len(eval_rows)} eval",
        "threads": threads,
    }


def packed_side(
    model_dir: str | os.PathLike[str],
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    params: Mapping[str, Any],
    out: Path,
) -> dict[str, Any]:
    """The platform's train_lora with packing on, in a fresh folder (a finished one is reused)."""
    from workers.ml.finetune import LoraFinetuneConfig, train_lora

    config = LoraFinetuneConfig(**{**params, "packing": True})
    result = train_lora(
        config,
        base_model_dir=model_dir,
        train_rows=train_rows,
        eval_rows=eval_rows,
        template=DEFAULT_TEMPLATE,
        output_dir=out,
    )
    m = result.metrics
    return {
        "tokens": m["train_tokens"],
        "train_seconds": m["train_seconds"],
        "tokens_per_second": m["train_tokens_per_second"],
        "eval_loss": m.get("eval_loss_after"),
        "eval_loss_before": m.get("eval_loss_before"),
    }


def bare_side(
    model_dir: str | os.PathLike[str],
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    params: Mapping[str, Any],
    out: Path,
) -> dict[str, Any]:
    """The recipe as a plain unpacked Trainer script with dynamic padding and the prompt masked
    (loss on the answer and EOS, as the platform's default loss_on=auto), evaluated after."""
    import dataclasses

    import torch
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, set_seed

    from bench._finetune_bare import lora_model, params_of, precision_of, training_arguments

    p = params_of(params)
    set_seed(p.seed)
    cuda = torch.cuda.is_available()
    precision, load_kwargs = precision_of(p, cuda)
    model, tokenizer = lora_model(model_dir, p, load_kwargs)
    model.config.use_cache = False
    train = _encode(train_rows, tokenizer, p.max_seq_length)
    evals = _encode(eval_rows, tokenizer, p.max_seq_length)
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    seen = {"tokens": 0, "positions": 0}

    def collate(features):
        seen["tokens"] += sum(len(f["input_ids"]) for f in features)
        batch = pad(features)
        seen["positions"] += batch["input_ids"].numel()
        return batch

    args = dataclasses.replace(
        training_arguments(p, out / "checkpoints", precision, cuda),
        per_device_eval_batch_size=p.per_device_train_batch_size,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=evals, data_collator=collate
    )
    trainer.remove_callback(PrinterCallback)
    before = trainer.evaluate()["eval_loss"]
    tokens0, positions0 = seen["tokens"], seen["positions"]
    t0 = time.perf_counter()
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = seen["tokens"] - tokens0
    positions = seen["positions"] - positions0
    after = trainer.evaluate()["eval_loss"]
    return {
        "tokens": tokens,
        "positions": positions,
        "train_seconds": round(seconds, 4),
        "tokens_per_second": round(tokens / seconds, 2),
        "eval_loss": float(after),
        "eval_loss_before": float(before),
    }


def _encode(
    rows: list[dict[str, Any]], tokenizer: Any, max_seq_length: int
) -> list[dict[str, list[int]]]:
    """Text + EOS, labels -100 over the prompt (everything before the answer), cut to length."""
    from workers.data.canonical import render_template

    data = []
    for row in rows:
        ids = tokenizer(render_template(DEFAULT_TEMPLATE, row))["input_ids"]
        ids = [*ids, tokenizer.eos_token_id]
        prompt = tokenizer(render_template(DEFAULT_TEMPLATE, {**row, "answer": ""}))["input_ids"]
        n = len(prompt) if ids[: len(prompt)] == prompt else 0
        labels = [-100] * n + ids[n:]
        data.append(
            {
                "input_ids": ids[:max_seq_length],
                "attention_mask": [1] * min(len(ids), max_seq_length),
                "labels": labels[:max_seq_length],
            }
        )
    return data


def headline(r: Mapping[str, Any]) -> str:
    ok = r["ratio"] >= GOAL_RATIO and r["diff_pct"] <= GOAL_DIFF_PCT
    return (
        f"RESULT finetune-packing {'OK' if ok else 'BELOW GOAL'}: useful tokens/s packed "
        f"{r['tokens_per_second_packed']:,.0f} vs bare unpacked {r['tokens_per_second_bare']:,.0f}"
        f" = {r['ratio']:.2f}x (goal >= {GOAL_RATIO}) | eval loss packed "
        f"{r['eval_loss_packed']:.4f} bare {r['eval_loss_bare']:.4f} diff {r['diff_pct']:.2f}% "
        f"(goal <= {GOAL_DIFF_PCT}%) | tiny Llama, {r['rows']} {r['data']} rows "
        f"({r['padding_pct_bare']:.0f}% of the bare batches padding), default recipe, "
        f"{r['steps']} steps, {r['threads']} thread(s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--data",
        choices=("qa", "sums"),
        default="qa",
        help="qa: varied-length QA rows (default); sums: demo_rows, all one length",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    opts = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    result = packing_bench(
        steps=opts.steps, rounds=opts.rounds, rows=opts.rows, threads=opts.threads, data=opts.data
    )
    if opts.json:
        print(json.dumps(result, indent=1), file=sys.stderr)
    print(headline(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
