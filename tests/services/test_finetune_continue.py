"""Retry of a cancelled fine-tune continues from its last complete checkpoint, not from step 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from apps.datasets import services as dataset_services
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.jobs.selectors import job_metric_series
from apps.jobs.states import JobState
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from workers.ml.finetune import LoraFinetuneConfig, complete_checkpoints, train_lora
from workers.ml.reporting import RecordingReporter
from workers.tasks.reporter import JobReporter
from workers.tasks.runtime import execute_job

pytestmark = pytest.mark.django_db(transaction=True)

QA = [(f"{a} 加 {b} 等于几?", f"{a} 加 {b} 等于 {a + b}。") for a in range(6) for b in range(6)]
PARAMS = {
    "max_steps": 24,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "warmup_steps": 2,
    "logging_steps": 2,
    "save_steps": 5,
    "eval_steps": 5,
    "learning_rate": 1e-2,
    "max_seq_length": 64,
}
CANCEL_AT = 7


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only add contention
    yield
    torch.set_num_threads(before)


@pytest.fixture
def version(project, member, tmp_path):
    project.require_dataset_approval = False
    project.save(update_fields=["require_dataset_approval"])
    path = tmp_path / "sums.csv"
    path.write_text("question,answer\n" + "".join(f"{q},{a}\n" for q, a in QA), encoding="utf-8")
    version, _ = dataset_services.dataset_import(
        project=project,
        actor=member,
        upload_path=path,
        filename=path.name,
        name="Sums",
        license="CC0-1.0",
        source="generated in tests",
        validation_fraction=0.2,
        seed=1,
    )
    return version


@pytest.fixture
def tiny(db):
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


@pytest.fixture
def cancel_when(monkeypatch, member):
    """cancel_when(job, step): the member presses Cancel once `job` reports `step`. The job turns
    cancelling in the database, and its reporter learns it as its heartbeat would, only at once
    (the heartbeat polls every 0.5 s: the tiny model would be done by then)."""
    plan: dict[int, int] = {}
    original = JobReporter.step

    def step(self, step, total, metrics=None):
        original(self, step, total, metrics)
        at = plan.get(self.job_id)
        if at is not None and step >= at and not self.cancel_requested.is_set():
            assert job_services.job_cancel(job=Job.objects.get(pk=self.job_id), actor=member)
            self.cancel_requested.set()

    monkeypatch.setattr(JobReporter, "step", step)
    return lambda job, at: plan.__setitem__(job.pk, at)


def launch(project, member, version, tiny) -> Job:
    params = {"base_model_id": tiny.pk, "dataset_version_id": version.pk, **PARAMS}
    return job_services.job_create(
        project=project, kind="finetune.lora", params=params, created_by=member
    )


def run(job: Job) -> Job:
    execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    return job


def adapter_tensors(job: Job) -> dict:
    from safetensors.torch import load_file

    adapter = Adapter.objects.get(job=job)
    return load_file(Path(settings.MEDIA_ROOT) / adapter.storage_path / "adapter_model.safetensors")


def log_lines(job: Job) -> list[str]:
    return [e.data["message"] for e in job.events.filter(kind="log").order_by("seq")]


@pytest.mark.slow
def test_a_retry_of_a_cancelled_fine_tune_continues_and_ends_like_an_uninterrupted_one(
    client, project, member, version, tiny, cancel_when
):
    cancelled = launch(project, member, version, tiny)
    cancel_when(cancelled, CANCEL_AT)
    assert run(cancelled).state == JobState.CANCELLED, cancelled.error
    checkpoints = Path(settings.JOBS_DIR) / str(cancelled.pk) / "run" / "checkpoints"
    kept = complete_checkpoints(checkpoints)[0].step
    assert CANCEL_AT <= kept <= CANCEL_AT + 1

    # The job page offers to continue from there.
    client.force_login(member)
    page = client.get(reverse("jobs:detail", args=[project.pk, cancelled.pk])).content.decode()
    assert f"Retry from step {kept}" in page

    retry = run(job_services.job_retry(job=cancelled, actor=member))
    assert retry.state == JobState.SUCCEEDED, retry.error
    assert retry.retry_of_id == cancelled.pk
    assert retry.result["resumed_from_step"] == kept
    assert f"continuing from step {kept} of job {cancelled.pk}" in log_lines(retry)
    # The retried job trained only the steps after the checkpoint; its eval curve goes on.
    series = job_metric_series(job=retry)
    assert [s for s, _ in series["loss"]][0] > kept
    assert [s for s, _ in series["eval_loss"]] == [s for s in (10, 15, 20, 24) if s > kept]
    # The cancelled job's checkpoint is still there (it was linked or copied, not moved).
    assert complete_checkpoints(checkpoints)[0].step == kept

    uninterrupted = run(launch(project, member, version, tiny))
    assert (
        uninterrupted.state == JobState.SUCCEEDED and not uninterrupted.result["resumed_from_step"]
    )
    continued, whole = adapter_tensors(retry), adapter_tensors(uninterrupted)
    assert continued.keys() == whole.keys()
    for name in whole:  # bit for bit on CPU: same data order, RNG, optimizer and scheduler
        assert continued[name].equal(whole[name]), name
    assert (
        retry.result["metrics"]["eval_loss_after"]
        == uninterrupted.result["metrics"]["eval_loss_after"]
    )


def test_a_retry_of_a_job_that_failed_before_its_first_checkpoint_starts_from_step_zero(
    client, project, member, version, tiny
):
    failed = launch(project, member, version, tiny)
    Job.objects.filter(pk=failed.pk).update(state=JobState.FAILED, error="worker lost")
    failed.refresh_from_db()

    client.force_login(member)
    page = client.get(reverse("jobs:detail", args=[project.pk, failed.pk])).content.decode()
    assert 'id="job-retry-form"' in page and "Retry from step" not in page


def test_a_run_with_other_parameters_does_not_continue_from_an_earlier_folder(tmp_path):
    """The fingerprint guards the take-over: other parameters (or data) start from step 0."""
    from workers.ml.models import build_tiny_llama

    base = build_tiny_llama(tmp_path / "tiny", seed=0)
    rows = [{"question": q, "answer": a} for q, a in QA]
    template = "### 问题:{question}\n### 回答:{answer}"
    config = LoraFinetuneConfig(
        max_steps=4, save_steps=2, logging_steps=2, eval_fraction=0.0, max_seq_length=64
    )
    stopper = RecordingReporter(stop_after_steps=2)
    first = train_lora(
        config,
        base_model_dir=base,
        train_rows=rows,
        template=template,
        output_dir=tmp_path / "first",
        reporter=stopper,
    )
    assert first.status == "cancelled" and complete_checkpoints(tmp_path / "first/checkpoints")

    reporter = RecordingReporter()
    other = train_lora(
        LoraFinetuneConfig(**{**config.to_dict(), "learning_rate": 1e-3}),
        base_model_dir=base,
        train_rows=rows,
        template=template,
        output_dir=tmp_path / "second",
        reporter=reporter,
        continue_from=[("job 1", tmp_path / "first")],
    )
    assert other.status == "succeeded" and other.resumed_from_step is None
    assert any("no complete checkpoint of job 1" in msg for msg, _ in reporter.logs)
    assert not any("continuing from step" in msg for msg, _ in reporter.logs)
