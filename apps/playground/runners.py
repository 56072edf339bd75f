"""Runner for the playground's text generation: the base model and its adapters side by side,
one text Output per answer."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from apps.models.models import Adapter, BaseModel
from apps.models.services import model_folder
from apps.outputs.services import output_create
from workers.common.timing import timed

if TYPE_CHECKING:
    from workers.ml.textgen import GenerationResult, GenerationSettings

# What each answer's Output keeps of its run's figures (and the job's result repeats).
METRICS = (
    "tokens",
    "seconds",
    "tokens_per_s",
    "load_seconds",
    "loaded",
    "device",
    "quantization",
    "finish_reason",
    "first_token_seconds",
    "prompt_tokens",
)


def _adapters(ctx) -> tuple[dict[int, Adapter], list[str | os.PathLike[str] | None]]:
    """The project's requested adapters by id, and one folder per run (None: the base model)."""
    ids = ctx.params.adapter_ids
    adapters = {
        a.pk: a
        for a in Adapter.objects.filter(pk__in=[i for i in ids if i], project_id=ctx.project_id)
    }
    adapter_dirs: list[str | os.PathLike[str] | None] = [
        None if i is None else str(Path(settings.MEDIA_ROOT) / adapters[i].storage_path)
        for i in ids
    ]
    return adapters, adapter_dirs


def _generation_settings(p) -> GenerationSettings:
    from workers.ml.textgen import GenerationSettings

    return GenerationSettings(
        max_new_tokens=p.max_new_tokens,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        repetition_penalty=p.repetition_penalty,
        seed=p.seed,
        quantization=None if p.quantization == "none" else p.quantization,
    )


def _streamer(ctx, total: int) -> Callable[[int, str], None]:
    """Each run's text to the job's websocket as it comes, a token's progress step at a time."""
    produced = {"tokens": 0}

    def on_text(index: int, delta: str) -> None:
        ctx.reporter.text(delta, index=index)
        produced["tokens"] += 1
        ctx.reporter.step(min(produced["tokens"], total), total)

    return on_text


@timed("playground.save_answer")
def _save_answer(
    ctx,
    index: int,
    result: GenerationResult,
    *,
    base: BaseModel,
    adapter: Adapter | None,
    author_id: int | None,
) -> dict:
    """One answer as a text Output, logged; returns its entry in the job's result."""
    p = ctx.params
    data = result.to_dict()
    output = output_create(
        project_id=ctx.project_id,
        job_id=ctx.job_id,
        kind="text",
        created_by_id=author_id,
        text=result.text,
        prompt=p.prompt,
        params={
            **p.model_dump(),
            "rendered_prompt": result.prompt,
            "adapter_id": adapter.pk if adapter else None,
        },
        seed=result.seed,
        base_model=base,
        adapter=adapter,
        sha256=hashlib.sha256(result.text.encode("utf-8")).hexdigest(),
        metrics={k: data.get(k) for k in METRICS},
    )
    ctx.reporter.log(
        f"[{index}] {adapter.name if adapter else base.name}: {result.tokens} tokens, "
        f"{result.tokens_per_s:.1f} tokens/s on {result.device}"
        f"{' (' + result.quantization + ')' if result.quantization else ''}"
        + (f", model loaded in {result.load_seconds:.1f}s" if result.loaded else ", model was warm")
    )
    return {
        "output_id": output.pk,
        "adapter_id": adapter.pk if adapter else None,
        "text": result.text,
        **output.metrics,
        "seed": result.seed,
    }


def run_textgen(ctx) -> dict:
    """Generate on the base model and each requested adapter; save each answer as a text Output."""
    from workers.ml.reporting import JobCancelled
    from workers.ml.textgen import compare

    p = ctx.params
    base = BaseModel.objects.get(pk=p.base_model_id)
    folder = model_folder(base, log_to=ctx.reporter.log)
    adapters, adapter_dirs = _adapters(ctx)
    gen = _generation_settings(p)
    total = p.max_new_tokens * len(adapter_dirs)
    results = compare(
        folder,
        p.prompt,
        gen,
        adapter_dirs=adapter_dirs,
        on_text=_streamer(ctx, total),
        should_stop=ctx.reporter.should_stop,
        template=p.template or None,
        system=p.system or None,
        use_chat_template=p.use_chat_template,
        messages=p.messages.model_dump() or None,
        stop=p.stop,
    )
    # The last words of the answer go out now, not after the Output rows below are written.
    ctx.reporter.flush()
    if ctx.reporter.should_stop():
        raise JobCancelled()
    from apps.jobs.models import Job

    author_id = Job.objects.filter(pk=ctx.job_id).values_list("created_by_id", flat=True).first()
    runs = []
    for index, result in enumerate(results):
        adapter = adapters.get(p.adapter_ids[index]) if p.adapter_ids[index] else None
        runs.append(
            _save_answer(ctx, index, result, base=base, adapter=adapter, author_id=author_id)
        )
    ctx.reporter.step(total, total)
    return {"runs": json.loads(json.dumps(runs, default=str))}
