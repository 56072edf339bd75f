"""The TrainerCallbacks of a fine-tune, and the Reporter adapter that leaves cancel to them.

The callback classes subclass transformers' TrainerCallback, so they are built by a function on
first use: importing this module does not import transformers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from workers.ml.finetune.checkpoints import mark_complete, sweep_checkpoints
from workers.ml.finetune.data import PackCollator, PadCollator
from workers.ml.finetune.ranks import any_rank, barrier, sum_across_ranks
from workers.ml.reporting import Reporter

__all__ = ["NoStopReporter", "TrainerCallbacks", "trainer_callbacks"]


class TrainerCallbacks(NamedTuple):
    """The callback classes (not instances) a fine-tune adds to its Trainer."""

    LogAtSaves: type
    CheckpointMarker: type
    Throughput: type
    Stop: type
    EvalCurve: type


def trainer_callbacks() -> TrainerCallbacks:
    """Build the callback classes (imports transformers)."""
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):
        """Writes COMPLETE into each checkpoint after Trainer saved it (all ranks done), prunes.

        The reporter is flushed first: a checkpoint is complete only once every metric point up
        to its step is kept, since a resumed run starts after it and never reports them again.
        """

        def __init__(self, keep: int, flush: Callable[[], None]) -> None:
            self.keep = keep
            self.flush = flush

        def on_save(self, args, state, control, **kwargs):
            barrier()
            if state.is_world_process_zero:
                root = Path(args.output_dir)
                self.flush()
                mark_complete(root / f"checkpoint-{state.global_step}", state.global_step)
                sweep_checkpoints(root, self.keep)
            barrier()
            return control

    class LogAtSaves(TrainerCallback):
        """Closes a loss-logging window at every checkpoint and at the last step.

        Trainer logs the mean loss since its previous log. A resumed run starts its first window
        at the checkpoint, so windows that span a checkpoint would differ from an uninterrupted
        run's; aligned windows make the log history, and the train_loss computed from it, the
        same whether or not the run was interrupted.
        """

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True
            return control

    class Throughput(TrainerCallback):
        """Adds tokens_per_second (real tokens, all ranks, since the previous log) to loss logs.

        `paused`: seconds spent outside training so far (evaluations during training), left
        out of the time.
        """

        def __init__(
            self,
            collator: PadCollator | PackCollator,
            paused: Callable[[], float] | None = None,
        ) -> None:
            self.collator = collator
            self.paused = paused or (lambda: 0.0)
            self.mark: tuple[float, int] | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.mark = (time.perf_counter() - self.paused(), self.collator.tokens)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "loss" not in logs or self.mark is None:
                return
            now, tokens = time.perf_counter() - self.paused(), self.collator.tokens
            delta = sum_across_ranks(tokens - self.mark[1], args.device)
            if now > self.mark[0]:
                logs["tokens_per_second"] = round(delta / (now - self.mark[0]), 2)
            self.mark = (now, tokens)

    class Stop(TrainerCallback):
        """Stops after the current optimizer step when asked (all ranks agree), saving first."""

        def __init__(self, should_stop: Callable[[], bool]) -> None:
            self.should_stop = should_stop
            self.stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                return control
            if any_rank(bool(self.should_stop()), args.device):
                control.should_training_stop = True
                control.should_save = True
                control.should_log = True  # close the loss window at the checkpoint (LogAtSaves)
                self.stopped_at = state.global_step
            return control

    EvalCurve = _eval_curve_class(TrainerCallback)
    return TrainerCallbacks(LogAtSaves, CheckpointMarker, Throughput, Stop, EvalCurve)


def _eval_curve_class(base: type) -> type:
    """EvalCurve, on transformers' TrainerCallback (passed in: see the module doc)."""

    class EvalCurve(base):
        """Evaluates every `every` optimizer steps (not at the last one: the eval after
        training is that point) and reports it as eval_loss and perplexity at its step.

        Every rank evaluates at the same steps (DDP gathers the eval across them). A resumed run
        evaluates at the same steps as an uninterrupted one, and train.py runs evaluations with
        the RNG state put back afterwards, so they never change the adapter.
        """

        def __init__(self, every: int) -> None:
            self.every = every

        def on_step_end(self, args, state, control, **kwargs):
            step = state.global_step
            if self.every > 0 and step % self.every == 0 and step < state.max_steps:
                control.should_evaluate = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "eval_loss" not in logs:
                return
            for key in [k for k in logs if k.startswith("eval_") and k != "eval_loss"]:
                logs.pop(key)  # eval_runtime, eval_samples_per_second...: not a curve
            loss = float(logs["eval_loss"])
            if math.isfinite(loss) and loss < 700:  # exp overflows past ~709
                logs["perplexity"] = math.exp(loss)

    return EvalCurve


class NoStopReporter:
    """Forwards to a Reporter but never asks to stop (the Stop callback owns cancel).

    Trainer's closing log carries its own `train_loss`: the mean over the steps of this
    `train()` call only, wrong after a resume. It is dropped here; the run's mean over all its
    steps (mean_logged_loss) is reported with the final metrics.
    """

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def step(self, step: int, total: int, metrics: dict[str, float] | None = None) -> None:
        if metrics and "train_loss" in metrics:
            metrics = {k: v for k, v in metrics.items() if k != "train_loss"}
        self.inner.step(step, total, metrics)

    def log(self, message: str, level: str = "info") -> None:
        self.inner.log(message, level)

    def preview(self, image: Any) -> None:
        self.inner.preview(image)

    def artifact(self, path: str, name: str | None = None) -> None:
        self.inner.artifact(path, name)

    def should_stop(self) -> bool:
        return False

    def flush(self) -> None:
        self.inner.flush()
