"""The official `openai` package against a live Atelier (uvicorn + Celery worker + Redis): upload a
chat JSONL, fine-tune the tiny model on it, follow the job to `succeeded`, read its events and
checkpoints, and find the `ft:` model among the models, with nothing but `base_url` and an
Atelier token changed. (Chat and images with the client: test_openai_generation_live.py.)"""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

from apps.api.tokens import token_create
from apps.models.services import ensure_builtin_rows
from apps.projects.models import Project
from tests.integration.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROWS = [
    {
        "messages": [
            {"role": "system", "content": "You add small numbers."},
            {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
        ]
    }
    for a in range(1, 6)
    for b in range(1, 5)
]
TERMINAL = ("succeeded", "failed", "cancelled")


def test_the_official_client_fine_tunes_the_tiny_model_and_lists_its_ft_model(
    processes, project, people, tmp_path
):
    # No reviewer in this story: the project lets fine-tunes use versions without approval.
    Project.objects.filter(pk=project.pk).update(require_dataset_approval=False)
    ensure_builtin_rows()
    base = processes.web()
    processes.worker()
    _, raw = token_create(user=people["member"], name="notebook", project_id=project.pk)
    client = OpenAI(base_url=f"{base}/v1", api_key=raw, max_retries=0, timeout=60)
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    assert len(ROWS) == 20

    with path.open("rb") as f:
        uploaded = client.files.create(file=f, purpose="fine-tune")
    assert uploaded.status == "uploaded" and uploaded.filename == "sums.jsonl"
    processed = client.files.wait_for_processing(uploaded.id, poll_interval=0.2)
    assert processed.status == "processed", processed.status_details
    assert uploaded.id in [f.id for f in client.files.list()]
    lines = client.files.content(uploaded.id).text.splitlines()
    assert (
        len(lines) == 20 and json.loads(lines[0])["messages"][1]["content"] == "What is 1 plus 1?"
    )

    job = client.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=uploaded.id,
        suffix="adder",
        seed=7,
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 50}
            },
        },
        # Atelier's own recipe fields ride along: a short sequence, a loss point every step.
        extra_body={
            "hyperparameters": {"logging_steps": 1, "warmup_steps": 0, "max_seq_length": 64}
        },
    )
    assert job.status == "queued" and job.id.startswith("ftjob-")
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 4

    done = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in TERMINAL and j,
        timeout=600,
        interval=0.5,
        what="the fine-tune to finish",
    )
    assert done.status == "succeeded", (done.error, processes.log("worker")[-3000:])
    assert done.fine_tuned_model == f"ft:tiny-llama:adder:{job.id.removeprefix('ftjob-')}"
    assert done.trained_tokens and done.trained_tokens > 0
    assert job.id in [j.id for j in client.fine_tuning.jobs.list()]

    page = client.fine_tuning.jobs.list_events(job.id, limit=1000)
    paged = list(client.fine_tuning.jobs.list_events(job.id, limit=3))  # the client pages `after`
    assert [e.id for e in paged] == [e.id for e in page.data]
    assert page.data[0].message == "The job has successfully completed"
    assert page.data[-1].message == "Fine-tuning job queued"
    losses = [
        e.data["train_loss"] for e in page.data if e.type == "metrics" and "train_loss" in e.data
    ]
    assert len(losses) >= 5

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.fine_tuned_model_checkpoint for c in checkpoints] == [done.fine_tuned_model]
    assert checkpoints[0].step_number == 10 and checkpoints[0].fine_tuning_job_id == job.id

    models = {m.id: m for m in client.models.list()}
    assert {"tiny-llama", done.fine_tuned_model} <= models.keys()
    assert models[done.fine_tuned_model].owned_by == project.name
    assert client.models.retrieve(done.fine_tuned_model).id == done.fine_tuned_model

    # The client's exceptions carry OpenAI's error fields.
    with pytest.raises(openai.NotFoundError) as missing:
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.BadRequestError) as dpo:  # DPO trains on preference pairs only
        client.fine_tuning.jobs.create(
            model="tiny-llama", training_file=uploaded.id, method={"type": "dpo"}
        )
    assert dpo.value.param == "training_file"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{base}/v1", api_key="atl_not-a-token", max_retries=0).models.list()
