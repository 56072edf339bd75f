"""Progress, previews and cancel: diffusers' per-step callbacks turned into job progress counted
over the whole job (all batches and hi-res passes), small previews at most every
``preview_interval`` seconds, and a stop at the next denoising step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workers.imaging.pipeline.latents import preview_image
from workers.imaging.pipeline.request import MAX_STEPS, GenerationRequest, HiresFix
from workers.ml.reporting import JobCancelled

DEFAULT_PREVIEW_INTERVAL = 0.5  # seconds between previews (at most two a second)


class GenerationCancelled(JobCancelled):
    """The job was asked to stop; raised at the next denoising step instead of returning."""

    def __init__(self, message: str = "generation cancelled", *, steps_done: int = 0) -> None:
        super().__init__(message)
        self.steps_done = steps_done


class StepTracker:
    """Turns diffusers' per-step callbacks into job progress, previews and cancellation."""

    def __init__(
        self,
        planned: list[int],
        on_step: Callable[..., Any] | None,
        should_stop: Callable[[], bool] | None,
        on_preview: Callable[[Any], Any] | None,
        preview_interval: float,
    ) -> None:
        self.planned = planned  # steps per pass, in order; corrected when a pass starts
        self.pass_index = -1
        self.on_step = on_step
        self.should_stop = should_stop
        self.on_preview = on_preview
        self.preview_interval = preview_interval
        self.last_preview = time.monotonic()
        self.cancelled = False
        self.steps_done = 0

    @property
    def total(self) -> int:
        return sum(self.planned)

    def begin_pass(self) -> None:
        self.pass_index += 1
        self.check_stop()

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            self.cancelled = True
            raise GenerationCancelled(steps_done=self.steps_done)

    def end_pass(self) -> None:
        if self.cancelled:
            raise GenerationCancelled(steps_done=self.steps_done)

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        actual = int(getattr(pipe, "num_timesteps", 0) or 0)
        if 0 <= self.pass_index < len(self.planned) and actual:
            self.planned[self.pass_index] = actual
        done = sum(self.planned[: self.pass_index]) + i + 1
        self.steps_done = done
        if self.on_step is not None:
            self.on_step(done, max(self.total, done))
        last_step = actual and i + 1 >= actual
        now = time.monotonic()
        if (
            self.on_preview is not None
            and not last_step
            and now - self.last_preview >= self.preview_interval
            and "latents" in kwargs
        ):
            self.last_preview = now
            self.on_preview(preview_image(pipe, kwargs["latents"]))
        if self.should_stop is not None and self.should_stop():
            pipe._interrupt = True  # diffusers skips the remaining steps (private attribute)
            self.cancelled = True
        return {}


def schedule_length(steps: int, strength: float) -> int:
    """The schedule length to give diffusers for img2img so that at least one step runs.

    diffusers runs ``int(steps * strength)`` steps, none when that is 0 (2 steps at 0.3); A1111
    always runs at least one: lengthen the schedule until one step falls inside the strength.
    """
    n = steps
    while int(n * strength) < 1 and n < MAX_STEPS * 100:
        n += 1
    return n


def _img2img_steps(steps: int, strength: float) -> int:
    n = schedule_length(steps, strength)
    return min(int(n * strength), n)


def planned_steps(req: GenerationRequest) -> list[int]:
    """Estimated denoising steps per pass of one pipeline call (corrected as passes start)."""
    first = (
        req.steps if req.init_image is None else _img2img_steps(req.steps, req.denoising_strength)
    )
    plan = [max(first, 1)]
    if isinstance(req.hires, HiresFix):
        plan.append(max(_img2img_steps(req.hires.steps or req.steps, req.hires.denoise), 1))
    return plan
