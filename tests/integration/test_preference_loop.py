"""The loop through the real worker: reviewers' decisions on text outputs become a preference
version, a DPO job on it runs on a Celery worker, and the adapter it publishes prefers the
approved answers (a higher log-likelihood than the rejected ones, more so than before)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings

from apps.datasets import services as dataset_services
from apps.jobs import services as job_services
from apps.jobs.states import JobState
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Moderation, Output
from apps.projects.selectors import project_access
from apps.review.exports import preference_export
from apps.review.services import output_decide

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NAMES = ["Ann", "Bob", "Cy", "Di", "Ed", "Flo", "Gus", "Hal"]
DPO = {
    "max_steps": 40,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "warmup_steps": 0,
    "logging_steps": 5,
    "save_steps": 10,
    "learning_rate": 0.02,
    "max_seq_length": 64,
    "max_prompt_length": 48,
    "eval_fraction": 0.0,
    "seed": 5,
}


def wait_for(predicate, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _decided_outputs(project, people) -> None:
    """For each prompt a kind and a rude answer (flagged, as the rules would), then a reviewer
    approves the kind one and rejects the rude one through the review service."""
    access = project_access(user=people["reviewer"], project_id=project.pk, need="review")
    for name in NAMES:
        # The untrained tiny model finds the rejected answer likelier in every pair.
        for text, approve in ((f" Good luck, {name}!", True), (f" Bad luck, {name}.", False)):
            output = Output.objects.create(
                project=project,
                kind="text",
                prompt=f"Say something to {name}.",
                text=text,
                sha256=f"{Output.objects.count():064d}",
                moderation=Moderation.FLAGGED,
                created_by=people["member"],
            )
            output_decide(
                access=access,
                actor=people["reviewer"],
                output_id=output.pk,
                approve=approve,
                reason="" if approve else "rude",
            )


def _margins(base_dir: str, adapter_dir: Path | None, pairs) -> tuple[float, float]:
    """(mean log p(approved) - log p(rejected), share of pairs where approved is likelier)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.ml.preference import pair_logps, preference_accuracy
    from workers.ml.preference.data import render_pairs

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    logps = pair_logps(model, tokenizer, render_pairs(pairs, tokenizer).pairs)
    return sum(c - r for c, r in logps) / len(logps), preference_accuracy(logps)


def test_reviewers_decisions_train_a_dpo_adapter_that_prefers_the_approved_answers(
    processes, project, people
):
    ensure_builtin_rows()
    tiny = BaseModel.objects.get(reference="tiny-llama")
    _decided_outputs(project, people)

    version = preference_export(project=project, actor=people["member"], dataset_name="Kindness")
    assert version.dataset.schema == "preference" and version.rows == len(NAMES)
    dataset_services.version_set_pii_report(version=version, report={"counts": {}})
    version.refresh_from_db()
    dataset_services.version_decide(
        version=version, actor=people["reviewer"], role="reviewer", approve=True, comment="ok"
    )

    processes.worker()
    job = job_services.job_create(
        project=project,
        kind="finetune.dpo",
        params={"base_model_id": tiny.pk, "dataset_version_id": version.pk, **DPO},
        created_by=people["member"],
    )

    def finished() -> bool:
        job.refresh_from_db()
        return job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    wait_for(finished, what="the DPO job")
    assert job.state == JobState.SUCCEEDED, job.error + processes.log("worker")[-3000:]

    adapter = Adapter.objects.get(job=job)
    assert adapter.kind == "dpo" and adapter.dataset_version_id == version.pk
    assert adapter.lineage["dataset_versions"][0]["id"] == version.pk
    charted = {k for e in job.events.filter(kind="metrics") for k in e.data["values"]}
    assert {
        "loss",
        "reward_margin",
        "reward_accuracy",
        "reward_chosen",
        "reward_rejected",
    } <= charted

    from apps.datasets.storage import media_path
    from workers.data.canonical import iter_split

    pairs = list(
        iter_split(media_path(version.storage_path), "train", seed=version.split_seed, fraction=0.0)
    )
    tiny.refresh_from_db()
    before, acc_before = _margins(tiny.path, None, pairs)
    after, acc_after = _margins(tiny.path, Path(settings.MEDIA_ROOT) / adapter.storage_path, pairs)
    # The approved answers gained log-likelihood relative to the rejected ones.
    assert after > before + 1.0, (before, after)
    assert acc_before == 0.0 and acc_after >= 0.75, (acc_before, acc_after)
