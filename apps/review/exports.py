"""Reviewers' decisions as training data: an approved and a rejected text output of the same
prompt make a preference pair (prompt, chosen, rejected), exported as a dataset version for DPO.

The pairs go through the same import as an uploaded file (a JSONL file, validated, canonical,
hashed, counted, checked by the moderation rules), so the version is like any other: the same
approval gate, the same downloads, the same fine-tune path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.audit.services import audit_record
from apps.datasets import storage
from apps.datasets.models import Dataset, DatasetVersion, Schema
from apps.datasets.services import DatasetImportFailed, dataset_import
from apps.outputs.models import Moderation, Output
from apps.review.models import ReviewDecision

# Pairs per prompt: a prompt with many decided outputs would otherwise outweigh the rest
# (n approved x m rejected grows fast).
MAX_PAIRS_PER_PROMPT = 16
FILENAME = "review-preferences.jsonl"
MAPPING = {
    "schema": Schema.PREFERENCE.value,
    "columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
}
# License of a new dataset: outputs carry no license field, and they are the project's own
# model outputs judged by its own reviewers, so the data is the project's, for internal use,
# until an admin records otherwise (the dataset's license can be changed in the admin).
LICENSE = "LicenseRef-Proprietary"
SOURCE = "derived from reviewed outputs of project {name}"
DESCRIPTION = (
    "Preference pairs (prompt, chosen, rejected) from reviewers' decisions on text outputs: "
    "approved outputs are chosen, rejected ones rejected, paired by prompt. For DPO."
)


def prompt_key(prompt: str) -> str:
    """The grouping key of a prompt: its words, whitespace runs made one space."""
    return " ".join(prompt.split())


def _decided_by_prompt(project) -> dict[str, dict[str, Any]]:
    """Decided text outputs grouped by prompt, in the order each prompt first appears."""
    groups: dict[str, dict[str, Any]] = {}
    outputs = (
        Output.objects.filter(
            project=project,
            kind="text",
            moderation__in=(Moderation.APPROVED, Moderation.REJECTED),
        )
        .order_by("id")
        .values_list("id", "prompt", "text", "moderation")
    )
    for output_id, prompt, text, moderation in outputs.iterator():
        key = prompt_key(prompt or "")
        if not key or not (text or "").strip():
            continue  # nothing to learn from (and an empty cell would fail the import)
        group = groups.setdefault(key, {"prompt": prompt.strip(), "approved": [], "rejected": []})
        group[moderation].append((output_id, text))
    return groups


def preference_pairs(*, project) -> list[dict[str, Any]]:
    """Every approved x rejected pair of text outputs with the same prompt (at most
    MAX_PAIRS_PER_PROMPT per prompt), oldest first: {prompt, chosen, rejected, chosen_id,
    rejected_id}. The same decisions always give the same list."""
    pairs: list[dict[str, Any]] = []
    for group in _decided_by_prompt(project).values():
        kept = 0
        for chosen_id, chosen in group["approved"]:
            for rejected_id, rejected in group["rejected"]:
                if kept >= MAX_PAIRS_PER_PROMPT:
                    break
                if chosen.strip() == rejected.strip():
                    continue  # the same text both ways teaches nothing
                pairs.append(
                    {
                        "prompt": group["prompt"],
                        "chosen": chosen,
                        "rejected": rejected,
                        "chosen_id": chosen_id,
                        "rejected_id": rejected_id,
                    }
                )
                kept += 1
    return pairs


def review_summary(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Which decisions the pairs came from, as a version records it in
    operation_params["review"] (apps/finetunes/lineage.py reads it): the output ids, how many
    were approved and rejected, and when the newest of their decisions was made (None when no
    decision row exists, e.g. outputs decided before decisions were recorded)."""
    chosen = sorted({p["chosen_id"] for p in pairs})
    rejected = sorted({p["rejected_id"] for p in pairs})
    outputs = sorted(set(chosen) | set(rejected))
    newest = (
        ReviewDecision.objects.filter(output_id__in=outputs)
        .order_by("-decided_at")
        .values_list("decided_at", flat=True)
        .first()
    )
    return {
        "outputs": outputs,
        "approved": len(chosen),
        "rejected": len(rejected),
        "decided_until": newest.isoformat() if newest is not None else None,
    }


def _write_pairs(path: Path, pairs: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for pair in pairs:
            row = {k: pair[k] for k in ("prompt", "chosen", "rejected")}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _target_dataset(project, name: str) -> Dataset | None:
    if not name:
        raise ValidationError({"dataset_name": "Name the dataset the pairs go into"})
    dataset = Dataset.objects.filter(project=project, name=name).first()
    if dataset is not None and dataset.schema != Schema.PREFERENCE:
        raise ValidationError(
            {
                "dataset_name": f"The dataset {name!r} holds {dataset.get_schema_display()} "
                "records, not preference pairs: choose another name"
            }
        )
    return dataset


def preference_export(*, project, actor, dataset_name: str, request=None) -> DatasetVersion:
    """Export the project's preference pairs as a new version of the dataset `dataset_name`
    (made when it does not exist), through the dataset import. The same pairs as the latest
    export give that version back. Refused (ValidationError) when there are no pairs."""
    name = (dataset_name or "").strip()
    dataset = _target_dataset(project, name)
    pairs = preference_pairs(project=project)
    if not pairs:
        raise ValidationError(
            "No preference pairs yet: a pair needs an approved and a rejected text output of "
            "the same prompt"
        )
    staging = storage.new_staging_dir()
    try:
        path = staging / FILENAME
        _write_pairs(path, pairs)
        with transaction.atomic():
            version, created = _import(project, actor, dataset, name, path, request)
            _record_review(version, created, review_summary(pairs))
            audit_record(
                action="review.preference_export",
                actor=actor,
                project=project,
                target=version,
                request=request,
                data={
                    "dataset": version.dataset.name,
                    "dataset_version": version.number,
                    "pairs": len(pairs),
                    "prompts": len({prompt_key(p["prompt"]) for p in pairs}),
                    "created": created,
                },
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version


def _record_review(version: DatasetVersion, created: bool, review: dict[str, Any]) -> None:
    """Keep the decisions on the version. The same content as an earlier export gives that
    version back unchanged, unless it predates this record (then it gets one)."""
    params = dict(version.operation_params or {})
    if not created and isinstance(params.get("review"), dict):
        return
    params["review"] = review
    DatasetVersion.objects.filter(pk=version.pk).update(operation_params=params)
    version.operation_params = params


def _import(project, actor, dataset, name, path, request) -> tuple[DatasetVersion, bool]:
    try:
        return dataset_import(
            project=project,
            actor=actor,
            upload_path=path,
            filename=FILENAME,
            name=name,
            dataset=dataset,
            description=DESCRIPTION,
            license=LICENSE,
            source=SOURCE.format(name=project.name),
            mapping=MAPPING,
            request=request,
        )
    except DatasetImportFailed as exc:
        raise ValidationError([e.get("message") or str(e) for e in exc.errors]) from exc
