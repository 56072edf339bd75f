"""`train_lora`: one fine-tune run in its folder, from checks and resume to the published adapter.

It checks the machine, decides whether the folder holds the same run (then it resumes from the
newest complete checkpoint, or returns the finished result), else takes over the newest complete
checkpoint of the same run from an earlier folder (a retried job's), trains in this process or in
N DDP processes, and writes the model card, the zip and result.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.finetune.base_model import inspect_base_model
from workers.ml.finetune.card import write_model_card
from workers.ml.finetune.checkpoints import (
    complete_checkpoints,
    copy_checkpoint,
    sweep_checkpoints,
)
from workers.ml.finetune.config import LoraFinetuneConfig
from workers.ml.finetune.data import split_eval
from workers.ml.finetune.files import (
    ADAPTER_DIR,
    ADAPTER_ZIP,
    CARD_NAME,
    CHECKPOINTS_DIR,
    EVAL_BEFORE_NAME,
    RESULT_NAME,
    RUN_NAME,
    write_json,
    zip_folder,
)
from workers.ml.finetune.portable import make_adapter_portable, portable_base_name
from workers.ml.finetune.runtime import check_devices, check_quantization, resolve_precision
from workers.ml.finetune.train import train_process
from workers.ml.reporting import JobFailed, NullReporter, Reporter

__all__ = ["FinetuneResult", "train_lora"]


@dataclass
class FinetuneResult:
    """What a run produced. status: succeeded (adapter written) or cancelled (checkpoint kept)."""

    status: str
    global_step: int
    max_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    adapter_dir: str | None = None
    adapter_zip: str | None = None
    model_card: str | None = None
    checkpoint: str | None = None
    resumed_from_step: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneResult:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@timed("finetune.train_lora")
def train_lora(
    config: LoraFinetuneConfig,
    *,
    base_model_dir: str | os.PathLike[str],
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    template: str,
    output_dir: str | os.PathLike[str],
    reporter: Reporter | None = None,
    resume: bool = True,
    card_info: Mapping[str, Any] | None = None,
    continue_from: Sequence[tuple[str, str | os.PathLike[str]]] = (),
) -> FinetuneResult:
    """Fine-tune a LoRA adapter on `train_rows` rendered with `template` (see the package doc).

    `eval_rows`: the dataset's validation split; None holds out `config.eval_fraction` of the
    training rows. `resume`: continue from the newest complete checkpoint of the same run (same
    config, model, template and rows) in `output_dir`; False starts over. `card_info`: what the
    model card says about the data and model (base_model, dataset_version, ...).
    `continue_from`: (label, run folder) of earlier attempts elsewhere, e.g. ("job 12", its
    folder): when `output_dir` has no checkpoint of its own, training continues from the newest
    complete checkpoint among those folders that ran the same run (same fingerprint).
    Returns status "succeeded" (adapter written) or "cancelled" (stopped; checkpoint kept).
    """
    reporter = reporter or NullReporter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base_model_dir = Path(base_model_dir).resolve()
    precision = resolve_precision(config.precision)
    check_quantization(config.load_in)
    device_kind = check_devices(config.num_gpus)
    inspect_base_model(base_model_dir)  # refuse pickle / remote-code folders before anything starts

    rows = [dict(r) for r in train_rows]
    if eval_rows is None:
        rows, held = split_eval(rows, config.eval_fraction, config.seed)
    else:
        held = [dict(r) for r in eval_rows]
    if not rows:
        raise JobFailed("the dataset has no training rows")
    fingerprint = run_fingerprint(
        config.to_dict(), str(base_model_dir), template, rows, held, config.num_gpus
    )
    done = prepare_folder(
        output_dir,
        config=config.to_dict(),
        keep=config.keep_checkpoints,
        run_fingerprint=fingerprint,
        resume=resume,
        reporter=reporter,
    )
    if done is not None:
        return done
    latest = complete_checkpoints(output_dir / CHECKPOINTS_DIR)
    if not latest and resume and continue_from:
        _take_over_checkpoint(output_dir, continue_from, fingerprint, reporter)
        latest = complete_checkpoints(output_dir / CHECKPOINTS_DIR)
    spec = {
        "config": config.to_dict(),
        "base_model_dir": str(base_model_dir),
        "template": template,
        "output_dir": str(output_dir),
        "resume_from": str(latest[0].path) if latest else None,
        "precision": precision,
        "device_kind": device_kind,
    }
    reporter.log(
        f"LoRA r={config.r} alpha={config.lora_alpha} on {base_model_dir.name}, {precision} on "
        f"{config.num_gpus if config.num_gpus > 1 else 1} {device_kind} process(es)"
        + (f", 4-/8-bit: {config.load_in}" if config.load_in != "none" else "")
    )
    result = _train(spec, rows, held, config.num_gpus, reporter)
    if result.status != "succeeded":
        return result
    info = dict(card_info or {})
    info.setdefault("base_model", base_model_dir.name)
    return _publish(result, output_dir, config, template, info, reporter)


def run_fingerprint(*parts: Any) -> str:
    """SHA-256 over the JSON of `parts`: equal for the same run (config, model, rows, ...)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def prepare_folder(
    output_dir: Path,
    *,
    config: Mapping[str, Any],
    keep: int,
    run_fingerprint: str,
    resume: bool,
    reporter: Reporter,
) -> FinetuneResult | None:
    """Make the folder ready for this run; return the result when this run already finished.

    The same run (same fingerprint) keeps its complete checkpoints; a different one, or
    resume=False, starts from an empty folder. Torn checkpoints and adapters are swept. The
    preference runs (workers/ml/preference) keep their folders by the same rule.
    """
    run_path = output_dir / RUN_NAME
    previous = json.loads(run_path.read_text()) if run_path.is_file() else None
    same_run = resume and previous is not None and previous.get("fingerprint") == run_fingerprint
    if same_run and (output_dir / RESULT_NAME).is_file() and (output_dir / ADAPTER_ZIP).is_file():
        done = FinetuneResult.from_dict(json.loads((output_dir / RESULT_NAME).read_text()))
        if done.status == "succeeded":
            reporter.log("this run already finished; returning its result")
            return done
    if not same_run:
        if resume and previous is not None:
            reporter.log(
                "parameters or data changed since the last attempt: starting over", "warning"
            )
        for name in (CHECKPOINTS_DIR, ADAPTER_DIR):
            shutil.rmtree(output_dir / name, ignore_errors=True)
        for name in (ADAPTER_ZIP, RESULT_NAME, EVAL_BEFORE_NAME):
            (output_dir / name).unlink(missing_ok=True)
        write_json(run_path, {"fingerprint": run_fingerprint, "config": dict(config)})
    sweep_checkpoints(output_dir / CHECKPOINTS_DIR, keep=max(keep, 1))
    for stale in output_dir.glob(".adapter-*"):  # a crash while the adapter was being published
        shutil.rmtree(stale, ignore_errors=True)
    return None


def _take_over_checkpoint(
    output_dir: Path,
    earlier: Sequence[tuple[str, str | os.PathLike[str]]],
    fingerprint: str,
    reporter: Reporter,
) -> None:
    """Copy the newest complete checkpoint of the same run among `earlier` run folders (and the
    eval before training measured there) into `output_dir`, where the resume then finds it."""
    best: tuple[str, Any, Path] | None = None
    for label, folder in earlier:
        folder = Path(folder)
        try:
            previous = json.loads((folder / RUN_NAME).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(previous, dict) or previous.get("fingerprint") != fingerprint:
            continue
        found = complete_checkpoints(folder / CHECKPOINTS_DIR)
        if found and (best is None or found[0].step > best[1].step):
            best = (label, found[0], folder)
    if best is None:
        reporter.log(
            f"no complete checkpoint of {', '.join(label for label, _ in earlier)} with the same "
            "parameters and data is on this machine: training from step 0"
        )
        return
    label, checkpoint, folder = best
    copy_checkpoint(checkpoint, output_dir / CHECKPOINTS_DIR)
    try:  # written atomically: a torn copy would stop the resume that reads it
        before = json.loads((folder / EVAL_BEFORE_NAME).read_text())
    except (OSError, ValueError):
        before = None  # measured again
    if isinstance(before, dict):
        write_json(output_dir / EVAL_BEFORE_NAME, before)
    reporter.log(f"continuing from step {checkpoint.step} of {label}")


def _train(
    spec: dict[str, Any],
    rows: list[dict[str, Any]],
    held: list[dict[str, Any]],
    num_gpus: int,
    reporter: Reporter,
) -> FinetuneResult:
    """Train here, or in `num_gpus` DDP processes; the result without its artifacts yet."""
    if num_gpus > 1:
        # Imported here, not at the top: the ranks run `python -m workers.ml.finetune.ddp`, and
        # a package that imported ddp itself would load that module twice in them.
        from workers.ml.finetune.ddp import run_distributed

        outcome = run_distributed(spec, rows, held, num_gpus, reporter)
    else:
        outcome = train_process(
            {**spec, "train_rows": rows, "eval_rows": held}, reporter, reporter.should_stop
        )
    latest = complete_checkpoints(Path(spec["output_dir"]) / CHECKPOINTS_DIR)
    return FinetuneResult(
        status=outcome["status"],
        global_step=outcome.get("global_step", 0),
        max_steps=outcome.get("max_steps", 0),
        metrics=outcome.get("metrics", {}),
        checkpoint=str(latest[0].path) if latest else None,
        resumed_from_step=outcome.get("resumed_from_step"),
        details=outcome.get("details", {}),
    )


def _publish(
    result: FinetuneResult,
    output_dir: Path,
    config: LoraFinetuneConfig,
    template: str,
    card_info: dict[str, Any],
    reporter: Reporter,
) -> FinetuneResult:
    """Write the model card into the adapter folder, zip it, keep result.json, report the zip."""
    adapter = output_dir / ADAPTER_DIR
    base = portable_base_name(card_info)
    make_adapter_portable(adapter, base)
    card = write_model_card(
        adapter / CARD_NAME,
        title=f"LoRA adapter for {card_info['base_model']}",
        card_info=card_info,
        base=base,
        config=config.to_dict(),
        metrics=result.metrics,
        details=result.details,
        template=template,
        kind="adapter",
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
