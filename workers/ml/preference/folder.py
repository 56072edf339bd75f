"""The run folder of a preference job: the same layout and crash rules as an SFT run
(workers/ml/finetune/files.py), so the platform publishes, resumes and cancels them alike.

    checkpoints/checkpoint-N/   Trainer checkpoints, counted once their COMPLETE marker is there
    adapter/                    the final adapter (PEFT format) + README.md model card
    adapter.zip                 the same folder, zipped
    eval_before.json            the evaluation before training (kept for resumes)
    run.json                    the fingerprint of the run the folder holds
    result.json                 the finished run's result (a finished run is not trained again)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from workers.ml.finetune.card import write_model_card
from workers.ml.finetune.checkpoints import complete_checkpoints
from workers.ml.finetune.files import (
    ADAPTER_DIR,
    ADAPTER_ZIP,
    CARD_NAME,
    CHECKPOINTS_DIR,
    RESULT_NAME,
    write_json,
    zip_folder,
)
from workers.ml.finetune.portable import make_adapter_portable, portable_base_name
from workers.ml.finetune.run import FinetuneResult, prepare_folder, run_fingerprint
from workers.ml.reporting import Reporter

__all__ = ["fingerprint", "prepare_folder", "publish", "run_in_folder"]

fingerprint = run_fingerprint  # the same rule as SFT runs


def publish(
    result: FinetuneResult,
    output_dir: Path,
    *,
    method: str,
    config: Mapping[str, Any],
    card_info: Mapping[str, Any],
    template: str | None,
    reporter: Reporter,
) -> FinetuneResult:
    """The model card into the adapter folder, the zip, result.json; the zip as an artifact.

    `method`: dpo, reward or grpo (the card's tag and title; a reward model's card loads it as a
    sequence classifier)."""
    adapter = output_dir / ADAPTER_DIR
    title = {
        "dpo": "DPO LoRA adapter",
        "reward": "Reward model (LoRA + score head)",
        "grpo": "GRPO LoRA adapter",
    }[method]
    base = portable_base_name(card_info)
    make_adapter_portable(adapter, base)
    card = write_model_card(
        adapter / CARD_NAME,
        title=f"{title} for {card_info['base_model']}",
        card_info=card_info,
        base=base,
        config=config,
        metrics=result.metrics,
        details=result.details,
        template=template,
        kind="adapter",
        method=method,
    )
    zip_path = zip_folder(adapter, output_dir / ADAPTER_ZIP)
    result.adapter_dir, result.adapter_zip, result.model_card = (
        str(adapter),
        str(zip_path),
        str(card),
    )
    write_json(output_dir / RESULT_NAME, result.to_dict())
    reporter.artifact(str(zip_path), ADAPTER_ZIP)
    return result


def run_in_folder(
    output_dir: Path,
    *,
    method: str,
    config: Any,
    run_id: str,
    resume: bool,
    reporter: Reporter,
    start_message: str,
    train: Callable[[str | None], dict[str, Any]],
    card_info: Mapping[str, Any] | None,
    base_model_dir: Path,
    template: str | None,
) -> FinetuneResult:
    """One preference run in its folder: resume-or-start-over (prepare_folder), `train(newest
    complete checkpoint or None)` -> {status, global_step, max_steps, metrics,
    resumed_from_step, details}, then the card, zip and result.json when it succeeded."""
    done = prepare_folder(
        output_dir,
        config=config.to_dict(),
        keep=config.keep_checkpoints,
        run_fingerprint=run_id,
        resume=resume,
        reporter=reporter,
    )
    if done is not None:
        return done
    latest = complete_checkpoints(output_dir / CHECKPOINTS_DIR)
    reporter.log(start_message)
    outcome = train(str(latest[0].path) if latest else None)
    latest = complete_checkpoints(output_dir / CHECKPOINTS_DIR)
    result = FinetuneResult(
        status=outcome["status"],
        global_step=outcome["global_step"],
        max_steps=outcome["max_steps"],
        metrics=outcome["metrics"],
        checkpoint=str(latest[0].path) if latest else None,
        resumed_from_step=outcome["resumed_from_step"],
        details=outcome["details"],
    )
    if result.status != "succeeded":
        return result
    info = dict(card_info or {})
    info.setdefault("base_model", base_model_dir.name)
    return publish(
        result,
        output_dir,
        method=method,
        config=config.to_dict(),
        card_info=info,
        template=template,
        reporter=reporter,
    )
