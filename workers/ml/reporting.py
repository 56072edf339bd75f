"""The Reporter seam between pure ML code and the job platform, and its framework adapters."""

from __future__ import annotations

import functools
import numbers
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "JobCancelled",
    "NullReporter",
    "RecordingReporter",
    "Reporter",
    "ThrottledReporter",
    "diffusers_step_callback",
    "numeric_metrics",
    "trainer_callback",
]


@runtime_checkable
class Reporter(Protocol):
    """What pure ML code may tell the platform about a running job, and ask it."""

    def step(self, step: int, total: int, metrics: dict[str, float] | None = None) -> None:
        """Report progress (`step` of `total`), optionally with metric values for that step."""

    def log(self, message: str, level: str = "info") -> None:
        """Report a human-readable log line."""

    def preview(self, image: Any) -> None:
        """Report an intermediate PIL image."""

    def artifact(self, path: str, name: str | None = None) -> None:
        """Report a file the job produced."""

    def should_stop(self) -> bool:
        """Tell whether the job has been asked to stop (cooperative cancel)."""

    def flush(self) -> None:
        """Make everything reported so far durable before returning.

        Called before a checkpoint is marked complete: a resumed attempt restarts after the
        checkpoint's step, so every event up to that step must already be kept.
        """


class JobCancelled(Exception):
    """Raised by pure code when should_stop() turned true where there is no natural stop point."""


class JobFailed(Exception):
    """A failure the user can act on; its message is shown as written (no traceback)."""


class NullReporter:
    """A Reporter that reports nothing and never asks to stop."""

    def step(self, step: int, total: int, metrics: dict[str, float] | None = None) -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        pass

    def preview(self, image: Any) -> None:
        pass

    def artifact(self, path: str, name: str | None = None) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def flush(self) -> None:
        pass


@dataclass
class RecordingReporter:
    """A Reporter that keeps every call, for tests and scripts; can ask to stop after N steps."""

    stop_after_steps: int | None = None
    steps: list[tuple[int, int, dict[str, float] | None]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    previews: list[Any] = field(default_factory=list)
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)
    stop_requested: bool = False
    flushes: int = 0

    def step(self, step: int, total: int, metrics: dict[str, float] | None = None) -> None:
        self.steps.append((step, total, dict(metrics) if metrics is not None else None))

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append((message, level))

    def preview(self, image: Any) -> None:
        self.previews.append(image)

    def artifact(self, path: str, name: str | None = None) -> None:
        self.artifacts.append((path, name))

    def should_stop(self) -> bool:
        if self.stop_requested:
            return True
        return self.stop_after_steps is not None and len(self.steps) >= self.stop_after_steps

    def flush(self) -> None:
        self.flushes += 1

    @property
    def metric_steps(self) -> list[tuple[int, dict[str, float]]]:
        """The (step, metrics) pairs of the steps that carried metrics."""
        return [(step, metrics) for step, _, metrics in self.steps if metrics]


class ThrottledReporter:
    """Forwards to another Reporter, dropping bare progress steps that come too often.

    Every step carrying metrics, every log, preview and artifact, and the last step
    (step >= total) are forwarded; bare progress steps at most once per `min_interval` seconds.
    """

    def __init__(
        self,
        inner: Reporter,
        min_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.min_interval = min_interval
        self.clock = clock
        self._last_forwarded_at: float | None = None

    def step(self, step: int, total: int, metrics: dict[str, float] | None = None) -> None:
        now = self.clock()
        is_last = total > 0 and step >= total
        due = self._last_forwarded_at is None or now - self._last_forwarded_at >= self.min_interval
        if metrics or is_last or due:
            self._last_forwarded_at = now
            self.inner.step(step, total, metrics)

    def log(self, message: str, level: str = "info") -> None:
        self.inner.log(message, level)

    def preview(self, image: Any) -> None:
        self.inner.preview(image)

    def artifact(self, path: str, name: str | None = None) -> None:
        self.inner.artifact(path, name)

    def should_stop(self) -> bool:
        return self.inner.should_stop()

    def flush(self) -> None:
        self.inner.flush()


def numeric_metrics(logs: Mapping[str, Any] | None) -> dict[str, float]:
    """Keep the real-number values of a log dict, as floats; drop strings, bools and the rest."""
    if not logs:
        return {}
    return {
        str(key): float(value)
        for key, value in logs.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def trainer_callback(reporter: Reporter) -> Any:
    """Return a transformers TrainerCallback that reports to `reporter` and stops when it asks."""
    return _reporter_callback_class()(reporter)


@functools.cache
def _reporter_callback_class() -> type:
    # Imported here so that importing this module does not import transformers (and torch).
    from transformers import TrainerCallback

    class ReporterCallback(TrainerCallback):
        """Forwards Trainer progress, logged metrics and saves to a Reporter."""

        def __init__(self, reporter: Reporter) -> None:
            self.reporter = reporter

        def on_step_end(self, args, state, control, **kwargs):
            # Trainer calls on_step_end before it logs; DefaultFlowCallback (always first in the
            # handler) has already set control.should_log, and when it is set on_log reports this
            # step with its metrics, so a bare progress step would only be a duplicate.
            if not control.should_log:
                self.reporter.step(state.global_step, state.max_steps)
            if self.reporter.should_stop():
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.reporter.step(state.global_step, state.max_steps, numeric_metrics(logs))

        def on_save(self, args, state, control, **kwargs):
            self.reporter.log(f"checkpoint saved at step {state.global_step}")

    return ReporterCallback


def diffusers_step_callback(
    reporter: Reporter, total_steps: int | None = None
) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
    """Return a diffusers `callback_on_step_end` that reports each denoising step and interrupts."""

    def on_step_end(pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]):
        total = total_steps if total_steps is not None else pipe.num_timesteps
        reporter.step(step_index + 1, total)
        if reporter.should_stop():
            # Pipelines check `self.interrupt` (backed by `_interrupt`) at the top of each
            # denoising step and skip the rest; the caller still gets the partly denoised output.
            pipe._interrupt = True
        return callback_kwargs

    return on_step_end
