"""The platform side of the preference jobs: the version's pairs and the models in, the Adapter
row and its artifacts out (DPO, reward model, GRPO), and reward scores onto Output rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.datasets.models import DatasetVersion
from apps.datasets.services import ensure_trainable
from apps.datasets.storage import media_path
from apps.finetunes.lineage import build_lineage
from apps.finetunes.runners import publish_adapter
from apps.finetunes.schemas import to_config
from apps.models.models import Adapter, BaseModel
from apps.models.services import model_folder
from workers.common.timing import timed


def _version(ctx) -> DatasetVersion:
    version = DatasetVersion.objects.select_related("dataset").get(
        pk=ctx.params.dataset_version_id, dataset__project_id=ctx.project_id
    )
    ensure_trainable(version)  # approval could have been withdrawn since the job was queued
    return version


def _splits(version: DatasetVersion) -> tuple[list[dict], list[dict] | None]:
    """(training rows, validation rows or None when the version has no validation split)."""
    from workers.data.canonical import iter_split

    path = media_path(version.storage_path)
    split = {"seed": version.split_seed, "fraction": version.validation_fraction}
    train = list(iter_split(path, "train", **split))
    evals = (
        list(iter_split(path, "validation", **split)) if version.validation_fraction > 0 else None
    )
    return train, evals


def _adapter_dir(adapter: Adapter) -> Path:
    return Path(settings.MEDIA_ROOT) / adapter.storage_path


def _card_info(ctx, base: BaseModel, folder: Path, version: DatasetVersion, **extra) -> dict:
    return {
        "base_model": base.name,
        "base_model_path": str(folder),
        "dataset": version.dataset.name,
        "dataset_version": version.number,
        "dataset_sha256": version.sha256,
        "dataset_license": version.dataset.license,
        **extra,
        "job": ctx.job_id,
    }


def _finish(ctx, *, base, version, template, result, kind, parent=None) -> dict[str, Any]:
    """Publish the adapter row (with its lineage) and the zip; the job's result."""
    from workers.ml.reporting import JobCancelled

    if result.status != "succeeded":
        raise JobCancelled()
    adapter = publish_adapter(
        ctx=ctx,
        base=base,
        version=version,
        template=template or "",
        params=ctx.params,
        result=result,
        kind=kind,
        parent=parent,
        lineage=build_lineage(base=base, versions=[version], parent=parent, job_id=ctx.job_id),
    )
    ctx.reporter.artifact(str(_adapter_dir(adapter).parent / "adapter.zip"), name="adapter.zip")
    return {
        "adapter_id": adapter.pk,
        "metrics": result.metrics,
        "global_step": result.global_step,
        "resumed_from_step": result.resumed_from_step,
    }


@timed("finetunes.run_dpo")
def run_dpo(ctx) -> dict:
    """DPO (or resume it) in the job's folder, then publish the adapter (kind dpo)."""
    from workers.ml.preference import train_dpo

    p = ctx.params
    version = _version(ctx)
    base = BaseModel.objects.get(pk=p.base_model_id)
    parent = (
        Adapter.objects.get(pk=p.parent_adapter_id, project_id=ctx.project_id)
        if p.parent_adapter_id
        else None
    )
    folder = model_folder(base, log_to=ctx.reporter.log)
    train, evals = _splits(version)
    # Prompts are rendered as the model was taught to read them: the SFT adapter's template.
    template = (parent.template or None) if parent is not None else None
    ctx.reporter.log(
        f"{base.name}{f' + {parent.name}' if parent else ''} on {version} ({len(train)} "
        f"training pairs{f', {len(evals)} validation pairs' if evals else ''})"
    )
    result = train_dpo(
        to_config(p),
        base_model_dir=folder,
        train_rows=train,
        eval_rows=evals,
        output_dir=ctx.workdir / "run",
        reporter=ctx.reporter,
        parent_adapter_dir=_adapter_dir(parent) if parent is not None else None,
        template=template,
        resume=True,
        card_info=_card_info(
            ctx, base, folder, version, **({"parent_adapter": parent.name} if parent else {})
        ),
    )
    return _finish(
        ctx,
        base=base,
        version=version,
        template=template,
        result=result,
        kind="dpo",
        parent=parent,
    )


@timed("finetunes.run_reward")
def run_reward(ctx) -> dict:
    """Train (or resume) a reward model in the job's folder; publish it (kind reward)."""
    from workers.ml.preference.reward import train_reward

    p = ctx.params
    version = _version(ctx)
    base = BaseModel.objects.get(pk=p.base_model_id)
    folder = model_folder(base, log_to=ctx.reporter.log)
    train, evals = _splits(version)
    ctx.reporter.log(f"reward model on {base.name}, {version} ({len(train)} training pairs)")
    result = train_reward(
        to_config(p),
        base_model_dir=folder,
        train_rows=train,
        eval_rows=evals,
        output_dir=ctx.workdir / "run",
        reporter=ctx.reporter,
        resume=True,
        card_info=_card_info(ctx, base, folder, version),
    )
    return _finish(ctx, base=base, version=version, template=None, result=result, kind="reward")


@timed("finetunes.run_policy")
def run_policy(ctx) -> dict:
    """GRPO with a reward model on the version's prompts; publish the adapter."""
    from apps.finetunes.preference_checks import PROMPT_FIELDS
    from workers.ml.preference.policy import train_policy

    p = ctx.params
    version = _version(ctx)
    base = BaseModel.objects.get(pk=p.base_model_id)
    scorer = Adapter.objects.get(pk=p.reward_adapter_id, project_id=ctx.project_id)
    folder = model_folder(base, log_to=ctx.reporter.log)
    field = PROMPT_FIELDS[version.dataset.schema]
    train, evals = _splits(version)
    result = train_policy(
        to_config(p),
        base_model_dir=folder,
        prompts=[str(r.get(field) or "") for r in train],
        eval_prompts=[str(r.get(field) or "") for r in evals] if evals is not None else None,
        reward_adapter_dir=_adapter_dir(scorer),
        output_dir=ctx.workdir / "run",
        reporter=ctx.reporter,
        resume=True,
        card_info=_card_info(ctx, base, folder, version, reward_model=scorer.name),
    )
    # Adapter.kind has no GRPO value yet (apps/models is not this module's): recorded as "grpo",
    # shown as such, and its lineage names the reward model it was trained against.
    return _finish(
        ctx, base=base, version=version, template=None, result=result, kind="grpo", parent=None
    )


@timed("finetunes.run_score")
def run_score(ctx) -> dict:
    """Score text outputs with a reward adapter: Output.metrics["reward"]["adapter-<id>"]."""
    from apps.jobs.models import Job
    from apps.outputs.models import Output
    from apps.outputs.selectors import visible_outputs_for
    from workers.ml.preference.data import render_text
    from workers.ml.preference.scoring import load_reward_model, score_texts
    from workers.ml.reporting import JobCancelled

    p = ctx.params
    adapter = Adapter.objects.select_related("base_model").get(
        pk=p.adapter_id, project_id=ctx.project_id
    )
    author = Job.objects.filter(pk=ctx.job_id).values_list("created_by", flat=True).first()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=author).first()
    # The submitter's visibility again: an output flagged since the job was queued drops out.
    outputs = list(
        visible_outputs_for(project=adapter.project, user=user)
        .filter(pk__in=p.output_ids, kind="text")
        .order_by("pk")
        .values_list("pk", "prompt", "text")
    )
    ctx.reporter.step(0, len(outputs))
    folder = model_folder(adapter.base_model, log_to=ctx.reporter.log)
    model, tokenizer = load_reward_model(folder, _adapter_dir(adapter))
    template = adapter.template or None
    # Not the bare id: the ORM reads an int-like JSON key as an array index, and the gallery
    # sorts on this key (apps/galleries/selectors.py reward_key).
    key = f"adapter-{adapter.pk}"
    scored: dict[int, float] = {}
    batch = 16
    for start in range(0, len(outputs), batch):
        if ctx.reporter.should_stop():
            raise JobCancelled()
        chunk = outputs[start : start + batch]
        texts = [
            render_text(tokenizer, prompt or "", text or "", template) for _, prompt, text in chunk
        ]
        for (pk, _, _), score in zip(chunk, score_texts(model, tokenizer, texts), strict=True):
            scored[pk] = score
        ctx.reporter.step(min(start + batch, len(outputs)), len(outputs))
    with transaction.atomic():
        for row in Output.objects.select_for_update().filter(pk__in=scored):
            metrics = dict(row.metrics or {})
            rewards = dict(metrics.get("reward") or {})
            rewards[key] = round(scored[row.pk], 6)
            metrics["reward"] = rewards
            Output.objects.filter(pk=row.pk).update(metrics=metrics)
    ranked = sorted(scored.items(), key=lambda kv: kv[1], reverse=True)
    ctx.reporter.log(
        f"scored {len(scored)} outputs with {adapter.name}"
        + (f"; best #{ranked[0][0]} ({ranked[0][1]:.3f})" if ranked else "")
    )
    return {"adapter_id": adapter.pk, "scored": len(scored), "ranking": [pk for pk, _ in ranked]}
