"""Runner for the playground's text generation: the base model and its adapters side by side,
one text Output per answer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings

from apps.models.models import Adapter, BaseModel
from apps.models.services import model_folder
from apps.outputs.services import output_create


def run_textgen(ctx) -> dict:
    """Generate on the base model and each requested adapter; save each answer as a text Output."""
    from workers.ml.reporting import JobCancelled
    from workers.ml.textgen import GenerationSettings, compare

    p = ctx.params
    base = BaseModel.objects.get(pk=p.base_model_id)
    folder = model_folder(base, log_to=ctx.reporter.log)
    adapters = {
        a.pk: a
        for a in Adapter.objects.filter(
            pk__in=[i for i in p.adapter_ids if i], project_id=ctx.project_id
        )
    }
    adapter_dirs = [
        None if i is None else str(Path(settings.MEDIA_ROOT) / adapters[i].storage_path)
        for i in p.adapter_ids
    ]
    gen = GenerationSettings(
        max_new_tokens=p.max_new_tokens,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        repetition_penalty=p.repetition_penalty,
        seed=p.seed,
        quantization=None if p.quantization == "none" else p.quantization,
    )
    produced = {"tokens": 0}
    total = p.max_new_tokens * len(adapter_dirs)

    def on_text(index: int, delta: str) -> None:
        ctx.reporter.text(delta, index=index)
        produced["tokens"] += 1
        ctx.reporter.step(min(produced["tokens"], total), total)

    results = compare(
        folder,
        p.prompt,
        gen,
        adapter_dirs=adapter_dirs,
        on_text=on_text,
        should_stop=ctx.reporter.should_stop,
        template=p.template or None,
        system=p.system or None,
        use_chat_template=p.use_chat_template,
    )
    if ctx.reporter.should_stop():
        raise JobCancelled()
    from apps.jobs.models import Job

    author_id = Job.objects.filter(pk=ctx.job_id).values_list("created_by_id", flat=True).first()
    runs = []
    for index, result in enumerate(results):
        adapter = adapters.get(p.adapter_ids[index]) if p.adapter_ids[index] else None
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
            metrics={
                k: data.get(k)
                for k in (
                    "tokens",
                    "seconds",
                    "tokens_per_s",
                    "load_seconds",
                    "loaded",
                    "device",
                    "quantization",
                    "finish_reason",
                    "first_token_seconds",
                )
            },
        )
        ctx.reporter.log(
            f"[{index}] {adapter.name if adapter else base.name}: {result.tokens} tokens, "
            f"{result.tokens_per_s:.1f} tokens/s on {result.device}"
            f"{' (' + result.quantization + ')' if result.quantization else ''}"
            + (
                f", model loaded in {result.load_seconds:.1f}s"
                if result.loaded
                else ", model was warm"
            )
        )
        runs.append(
            {
                "output_id": output.pk,
                "adapter_id": adapter.pk if adapter else None,
                "text": result.text,
                **output.metrics,
                "seed": result.seed,
            }
        )
    ctx.reporter.step(total, total)
    return {"runs": json.loads(json.dumps(runs, default=str))}
