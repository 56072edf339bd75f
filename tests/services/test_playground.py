"""The text playground through the real job runtime (in-process): streamed text, outputs, warm models."""

from __future__ import annotations

import pytest

from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.models.models import BaseModel
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Output

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tiny(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


def run(project, member, **params):
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(project=project, kind="textgen", params=params, created_by=member)
    outcome = execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    assert outcome == "succeeded", job.error
    return job


def test_a_playground_run_streams_text_and_saves_it_as_an_output(project, member, tiny):
    job = run(
        project,
        member,
        base_model_id=tiny.pk,
        prompt="What is blood pressure?",
        max_new_tokens=12,
        seed=3,
    )

    output = Output.objects.get(job=job)
    streamed = "".join(e.data["delta"] for e in job.events.filter(kind="text").order_by("seq"))
    assert streamed == output.text and output.text
    assert (
        output.seed == 3
        and output.base_model == tiny
        and output.kind == "text"
        and output.created_by == member
    )
    tiny.refresh_from_db()
    assert tiny.status == "ready" and tiny.parameters > 0  # built and inspected at first use


def test_the_same_seed_gives_the_same_text_and_the_second_run_finds_the_model_warm(
    project, member, tiny
):
    first = run(project, member, base_model_id=tiny.pk, prompt="Hello", max_new_tokens=10, seed=7)
    second = run(project, member, base_model_id=tiny.pk, prompt="Hello", max_new_tokens=10, seed=7)

    a, b = Output.objects.get(job=first), Output.objects.get(job=second)
    assert a.text == b.text
    assert b.metrics["loaded"] is False


def test_an_adapter_of_another_project_is_refused(project, member, tiny):
    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=project,
            kind="textgen",
            created_by=member,
            params={"base_model_id": tiny.pk, "adapter_ids": [None, 999], "prompt": "hi"},
        )
    assert "No adapter 999" in info.value.errors["adapter_ids"]
    assert not Job.objects.filter(kind="textgen").exists()


def test_a_reward_model_is_refused_as_a_writer(project, member, tiny):
    from apps.models.models import Adapter

    scorer = Adapter.objects.create(
        project=project, name="judge", base_model=tiny, storage_path="x", kind="reward"
    )
    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=project,
            kind="textgen",
            created_by=member,
            params={"base_model_id": tiny.pk, "adapter_ids": [None, scorer.pk], "prompt": "hi"},
        )
    assert "judge is a reward model" in info.value.errors["adapter_ids"]
    assert not Job.objects.filter(kind="textgen").exists()
