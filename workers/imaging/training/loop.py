"""The training loop image LoRA and textual inversion share: seeded batches, AdamW with the
schedule, live loss, samples every N steps, checkpoints, resume and cooperative stop.

A method gives the loop a :class:`Trainee` (what is trained and how a batch's loss is computed);
the loop owns the order of everything drawn from the run's generator, so a run resumed from a
checkpoint draws exactly what the uninterrupted run drew and ends with the same weights (on the
same CPU; on a GPU up to its non-deterministic kernels).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from workers.imaging.training.config import ImageTrainConfig
from workers.imaging.training.data import ShuffledOrder
from workers.imaging.training.state import RunState, lr_at, read_state, write_state
from workers.ml.checkpoints import CheckpointStore, restore_rng_state
from workers.ml.reporting import Reporter

__all__ = ["TrainResult", "Trainee", "train_loop"]

RESULT_NAME = "result.json"


class Trainee(Protocol):
    """What a method trains, as the loop sees it."""

    params: list[Any]  # the trained tensors (fp32 leaves), in a fixed order

    def loss(self, indices: Sequence[int], generator: Any) -> Any:
        """The loss of one batch of training images (by index), drawing only from `generator`."""

    def trained(self) -> dict[str, Any]:
        """The trained tensors by name, for a checkpoint."""

    def load_trained(self, tensors: dict[str, Any]) -> None:
        """Put a checkpoint's trained tensors back."""

    def after_step(self) -> None:
        """Called after each optimizer step."""

    def samples(self, prompts: Sequence[str]) -> list[Any]:
        """The sample prompts rendered with the weights as they are now."""

    def export(self, folder: Path) -> Path:
        """Write the finished artifact into `folder`; return its path."""


@dataclass
class TrainResult:
    """What a run ended with. `status`: succeeded or cancelled (stopped at a checkpoint)."""

    status: str
    global_step: int
    total_steps: int
    resumed_from_step: int | None = None
    artifact: str | None = None
    checkpoint: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "global_step": self.global_step,
            "total_steps": self.total_steps,
            "resumed_from_step": self.resumed_from_step,
            "artifact": self.artifact,
            "checkpoint": self.checkpoint,
            "metrics": self.metrics,
        }


def finished_result(output_dir: Path) -> TrainResult | None:
    """The result of a run that already finished in `output_dir` (its artifact still there)."""
    try:
        data = json.loads((output_dir / RESULT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("status") != "succeeded" or not Path(data.get("artifact") or "").is_file():
        return None
    return TrainResult(**data)


def _write_result(output_dir: Path, result: TrainResult) -> None:
    from workers.ml.finetune.files import write_json

    write_json(output_dir / RESULT_NAME, result.to_dict())


def train_loop(
    config: ImageTrainConfig,
    trainee: Trainee,
    *,
    size: int,
    output_dir: Path,
    reporter: Reporter,
    checkpoints: CheckpointStore,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train `trainee` on `size` images for config.steps steps, resuming from the newest complete
    checkpoint made with the same config; export the artifact when done."""
    import torch

    log = log or reporter.log
    fingerprint = json.loads(json.dumps(config.to_dict()))
    optimizer = torch.optim.AdamW(
        trainee.params,
        lr=config.learning_rate,
        betas=(0.9, 0.999),
        weight_decay=config.weight_decay,
        eps=1e-8,
    )
    generator = torch.Generator().manual_seed(config.seed)
    order = ShuffledOrder(size)
    start, resumed = 0, None
    window: list[float] = []  # the losses since the last logged step
    loss_sum, loss_count = 0.0, 0
    for cp in checkpoints.checkpoints():
        found = read_state(cp.path, optimizer=optimizer, params=trainee.params, config=fingerprint)
        if found is None:
            log(f"the checkpoint of step {cp.step} was made with other settings: not used")
            continue
        tensors, rng, run = found
        trainee.load_trained(tensors)
        restore_rng_state(rng)
        generator.set_state(run.generator)
        order.restore(run.data.get("order", {}))
        start = resumed = run.step
        window = run.losses
        loss_sum = float(run.data.get("loss_sum", 0.0))
        loss_count = int(run.data.get("loss_count", 0))
        log(f"resuming from the checkpoint of step {run.step}")
        break

    def save(step: int) -> Path:
        def write(folder: Path) -> None:
            write_state(
                folder,
                trained=trainee.trained(),
                optimizer=optimizer,
                params=trainee.params,
                state=RunState(
                    step=step,
                    generator=generator.get_state(),
                    data={"order": order.state(), "loss_sum": loss_sum, "loss_count": loss_count},
                    config=fingerprint,
                    losses=window,
                ),
            )

        path = checkpoints.save(step, write)
        checkpoints.prune(keep=config.keep_checkpoints)
        return path

    total = config.steps
    timer, timed_steps = time.perf_counter(), 0
    saved_at: int | None = resumed
    step = start
    while step < total:
        indices = order.take(config.batch_size, generator)
        lr = lr_at(
            step,
            peak=config.learning_rate,
            schedule=config.lr_scheduler,
            warmup=config.warmup_steps,
            total=total,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = trainee.loss(indices, generator)
        loss.backward()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainee.params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trainee.after_step()
        value = float(loss.detach())
        window.append(value)
        loss_sum, loss_count = loss_sum + value, loss_count + 1
        step += 1
        timed_steps += 1
        last = step == total
        if step % config.log_every == 0 or last:
            elapsed = time.perf_counter() - timer
            metrics = {"loss": sum(window) / len(window), "learning_rate": lr}
            if elapsed > 0:
                metrics["steps_per_second"] = timed_steps / elapsed
            reporter.step(step, total, metrics)
            window = []
            timer, timed_steps = time.perf_counter(), 0
        else:
            reporter.step(step, total)
        if config.sample_prompts and (
            last or (config.sample_every and step % config.sample_every == 0)
        ):
            reporter.preview(_sheet(trainee.samples(config.sample_prompts)))
            timer, timed_steps = time.perf_counter(), 0  # samples are not training time
        if not last and step % config.save_every == 0:
            save(step)
            saved_at = step
            timer, timed_steps = time.perf_counter(), 0
        if not last and reporter.should_stop():
            path = save(step) if saved_at != step else checkpoints.path_for(step)
            log(f"stopped at step {step}; a resumed run continues from its checkpoint")
            return TrainResult(
                status="cancelled",
                global_step=step,
                total_steps=total,
                resumed_from_step=resumed,
                checkpoint=str(path),
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    artifact = trainee.export(output_dir)
    result = TrainResult(
        status="succeeded",
        global_step=step,
        total_steps=total,
        resumed_from_step=resumed,
        artifact=str(artifact),
        metrics={"train_loss": loss_sum / max(1, loss_count)},
    )
    _write_result(output_dir, result)
    return result


def _sheet(images: Sequence[Any]) -> Any:
    from workers.imaging.training.samples import sample_sheet

    return sample_sheet(images)
