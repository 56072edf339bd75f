"""The official `openai` client against a live Atelier: uvicorn, a Celery worker, Redis.

Chat (streamed and not), completions, images (generation and edit) and moderations with the
tiny built-in models, through the same code paths a user's script takes."""

from __future__ import annotations

import base64
import io

import httpx2
import openai
import pytest
from PIL import Image

from apps.api.tokens import token_create
from apps.jobs.models import Job
from apps.jobs.states import JobState
from apps.models.services import ensure_builtin_rows
from apps.moderation.services import ruleset_current, ruleset_save
from apps.outputs.models import Output
from tests.integration.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUESTION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Hello! How can I help you today?"},
]


@pytest.fixture
def server(processes, project, people):
    """(base URL, raw token of the project's member): web only, no worker yet."""
    ensure_builtin_rows()
    base = processes.web()
    _, raw = token_create(user=people["member"], name="live", project_id=project.pk)
    return base, raw


@pytest.fixture
def client(server, processes):
    base, raw = server
    processes.worker(queues="gpu,cpu")
    return openai.OpenAI(base_url=base + "/v1", api_key=raw, max_retries=0, timeout=180)


def test_chat_streamed_and_not_gives_the_same_text_for_the_same_seed(client):
    whole = client.chat.completions.create(
        model="tiny-llama", messages=QUESTION, max_tokens=40, temperature=0, seed=11
    )
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    assert 0 < whole.usage.completion_tokens <= 40 and whole.usage.prompt_tokens > 0
    output = Output.objects.get(job_id=int(whole.id.split("-")[1]))
    assert output.text == text and output.kind == "text"

    stream = client.chat.completions.create(
        model="tiny-llama",
        messages=QUESTION,
        max_tokens=40,
        temperature=0,
        seed=11,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_completion_continues_the_prompt_and_streams_the_same(client):
    whole = client.completions.create(
        model="tiny-llama", prompt="The quick brown", max_tokens=12, temperature=0, seed=1
    )
    assert whole.object == "text_completion" and whole.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="tiny-llama",
            prompt="The quick brown",
            max_tokens=12,
            temperature=0,
            seed=1,
            stream=True,
        )
        if c.choices
    )
    assert streamed == whole.choices[0].text


def test_an_image_is_generated_and_an_uploaded_one_edited_as_base64_pngs(client, tmp_path):
    made = client.images.generate(
        model="tiny-sd",
        prompt="a red square",
        size="32x32",
        n=2,
        extra_body={"steps": 3, "seed": 4, "negative_prompt": "blurry"},
    )
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in made.data]
    assert [im.size for im in images] == [(32, 32), (32, 32)]
    assert {im.format for im in images} == {"PNG"}

    source = tmp_path / "blue.png"
    Image.new("RGB", (48, 48), "blue").save(source)
    with source.open("rb") as f:
        edited = client.images.edit(
            model="tiny-sd", image=f, prompt="a blue square", size="32x32", extra_body={"steps": 3}
        )
    (item,) = edited.data
    assert Image.open(io.BytesIO(base64.b64decode(item.b64_json))).size == (32, 32)
    upload = Output.objects.get(params__uploaded="blue.png")
    job = Job.objects.get(kind="image.generate", params__init_output_id=upload.pk)
    assert job.state == JobState.SUCCEEDED and upload.width == 48


def test_moderations_flag_what_the_projects_rules_flag(client, project, people):
    ruleset_current(project.pk)
    ruleset_save(
        project=project,
        rows=[{"kind": "keyword", "pattern": "zorblax", "category": "custom", "severity": "flag"}],
        actor=people["admin"],
    )
    answer = client.moderations.create(input=["a quiet evening", "the zorblax came back"])
    quiet, flagged = answer.results
    assert not quiet.flagged and flagged.flagged
    assert flagged.model_extra["atelier"]["hits"][0]["text"] == "zorblax"


def test_errors_reach_the_client_as_its_own_exceptions(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert info.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny-llama", messages=QUESTION, n=2)


def test_a_client_that_leaves_mid_stream_cancels_its_job(server, project):
    base, raw = server  # no worker: the job waits, queued, while the client reads the stream
    body = {"model": "tiny-llama", "messages": QUESTION, "stream": True}
    headers = {"Authorization": f"Bearer {raw}"}
    with (
        httpx2.Client(timeout=60) as http,
        http.stream("POST", base + "/v1/chat/completions", json=body, headers=headers) as r,
    ):
        assert r.status_code == 200
        first = next(r.iter_lines())
        assert first.startswith("data: ") and '"role": "assistant"' in first
        job = Job.objects.get(kind="textgen")
        assert job.state == JobState.QUEUED
    # The connection is closed: the server notices and cancels what it was generating for it.
    wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.CANCELLED, timeout=30)
