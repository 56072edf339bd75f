"""Runner for the playground's text generation: the base model and its adapters side by side,
one text Output per answer."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from apps.jobs.selectors import job_author_id
from apps.models.models import Adapter, BaseModel
from apps.models.services import model_folder
from apps.outputs.services import output_create
from apps.playground.prompts import adapter_prompt
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


def _turns(p) -> list[dict[str, str]]:
    """The conversation a run answers: the messages given, or [system?, user]."""
    if p.messages.root:
        return p.messages.model_dump()
    system = [{"role": "system", "content": p.system}] if p.system else []
    return [*system, {"role": "user", "content": p.prompt}]


def _run_prompts(p, adapters: dict[int, Adapter]) -> list[dict]:
    """compare()'s prompt arguments for each run: as asked, or (use_adapter_template with the
    chat template off) the conversation in the shape each adapter was trained on; the base
    model then reads the first adapter's shape, so the columns compare the same text."""
    asked = {
        "prompt": p.prompt,
        "template": p.template or None,
        "system": p.system or None,
        "messages": p.messages.model_dump() or None,
    }
    if p.use_chat_template or not p.use_adapter_template:
        return [asked] * len(p.adapter_ids)
    own = [adapters[i].template if i else "" for i in p.adapter_ids]
    shared = p.template or next((t for t in own if t.strip()), "")
    turns = _turns(p)
    runs = []
    for adapter_id, template in zip(p.adapter_ids, own, strict=True):
        # An adapter trained on chat-templated text has no shape of its own: as asked.
        chosen = shared if adapter_id is None else template
        text = adapter_prompt(chosen, turns) if chosen.strip() else None
        runs.append(
            asked
            if text is None
            else {"prompt": text, "template": None, "system": None, "messages": None}
        )
    return runs


def run_textgen(ctx) -> dict:
    """Generate on the base model and each requested adapter; save each answer as a text Output."""
    from workers.ml.reporting import JobCancelled
    from workers.ml.textgen import compare

    p = ctx.params
    base = BaseModel.objects.get(pk=p.base_model_id)
    folder = model_folder(base, log_to=ctx.reporter.log)
    adapters, adapter_dirs = _adapters(ctx)
    gen = _generation_settings(p)
    if gen.seed < 0:  # drawn once: every column runs on the same seed
        gen = replace(gen, seed=secrets.randbelow(2**31))
    total = p.max_new_tokens * len(adapter_dirs)
    stream = _streamer(ctx, total)
    results = []
    for index, (adapter_dir, prompt) in enumerate(
        zip(adapter_dirs, _run_prompts(p, adapters), strict=True)
    ):
        # One compare() per column: each may read its own prompt shape (its adapter's template).
        ran = compare(
            folder,
            prompt["prompt"],
            gen,
            adapter_dirs=[adapter_dir],
            on_text=lambda _i, delta, index=index: stream(index, delta),
            should_stop=ctx.reporter.should_stop,
            template=prompt["template"],
            system=prompt["system"],
            use_chat_template=p.use_chat_template,
            messages=prompt["messages"],
            stop=p.stop,
        )
        results += ran
        if not ran or ran[-1].stopped:
            break
    # The last words of the answer go out now, not after the Output rows below are written.
    ctx.reporter.flush()
    if ctx.reporter.should_stop():
        raise JobCancelled()
    author_id = job_author_id(ctx)
    runs = []
    for index, result in enumerate(results):
        adapter = adapters.get(p.adapter_ids[index]) if p.adapter_ids[index] else None
        runs.append(
            _save_answer(ctx, index, result, base=base, adapter=adapter, author_id=author_id)
        )
    ctx.reporter.step(total, total)
    return {"runs": json.loads(json.dumps(runs, default=str))}
