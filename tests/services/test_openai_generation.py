"""/v1/chat/completions, /v1/completions, /v1/images/* and /v1/moderations: what a client sends
is checked as the pages check it, and every refusal is OpenAI's error shape naming the field.

The generation paths themselves run here through the real job runtime in-process (the job is
executed in a thread, as a worker would); tests/integration/test_openai_generation_live.py
drives the same endpoints with the official client against uvicorn and a Celery worker."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.db import connection, connections
from openai.types import ModerationCreateResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from apps.api.tokens import token_create
from apps.jobs.models import Job
from apps.models.models import BaseModel
from apps.models.services import ensure_builtin_rows
from apps.moderation.services import ruleset_current, ruleset_save
from apps.outputs.models import Output
from apps.projects.models import Membership

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
IMAGES = "/v1/images/generations"
EDITS = "/v1/images/edits"
MODERATIONS = "/v1/moderations"

RULES = [
    {"kind": "keyword", "pattern": "zorblax", "category": "custom", "severity": "flag"},
    {"kind": "keyword", "pattern": "forbidden-thing", "category": "illicit", "severity": "block"},
]


@pytest.fixture
def models(db, tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return {m.reference: m for m in BaseModel.objects.all()}


@pytest.fixture
def tokens(people, project):
    """A raw token per member persona, each for `project`."""
    return {
        name: token_create(user=user, name="t", project_id=project.pk)[1]
        for name, user in people.items()
        if name != "outsider"
    }


def post(client, url: str, token: str, body: dict):
    return client.post(
        url,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content[:500]
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "param", "type"}
    return error


def chat(**extra) -> dict:
    return {"model": "tiny-llama", "messages": [{"role": "user", "content": "Hello"}], **extra}


# --------------------------------------------------------------------------- refusals


def test_an_unknown_model_is_a_404_on_the_model_parameter(client, tokens, models):
    error = error_of(post(client, CHAT, tokens["member"], chat(model="gpt-4o")), 404)
    assert error["param"] == "model" and error["code"] == "model_not_found"
    assert error["type"] == "not_found_error"
    assert not Job.objects.exists()


def test_an_image_model_cannot_chat_and_a_text_model_cannot_draw(client, tokens, models):
    error = error_of(post(client, CHAT, tokens["member"], chat(model="tiny-sd")), 400)
    assert error["param"] == "model" and error["code"] == "model_not_supported"
    error = error_of(
        post(client, IMAGES, tokens["member"], {"prompt": "a cat", "model": "tiny-llama"}), 400
    )
    assert error["param"] == "model"
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages.0.content",
        ),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages"),
    ],
)
def test_a_chat_request_it_cannot_serve_is_a_400_naming_the_parameter(
    client, tokens, models, extra, param
):
    error = error_of(post(client, CHAT, tokens["member"], chat(**extra)), 400)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert not Job.objects.exists()


def test_a_completion_takes_one_text_prompt(client, tokens, models):
    body = {"model": "tiny-llama", "prompt": [1, 2, 3]}
    assert error_of(post(client, COMPLETIONS, tokens["member"], body), 400)["param"] == "prompt"
    body = {"model": "tiny-llama", "prompt": "Once", "suffix": "end"}
    assert error_of(post(client, COMPLETIONS, tokens["member"], body), 400)["param"] == "suffix"
    body = {"model": "tiny-llama"}
    assert error_of(post(client, COMPLETIONS, tokens["member"], body), 400)["param"] == "prompt"


def test_a_viewer_may_not_generate_as_on_the_playground_but_may_moderate(client, tokens, models):
    error_of(post(client, CHAT, tokens["viewer"], chat()), 403)
    error_of(post(client, IMAGES, tokens["viewer"], {"prompt": "a cat"}), 403)
    ok = post(client, MODERATIONS, tokens["viewer"], {"input": "hello"})
    assert ok.status_code == 200
    assert not Job.objects.exists()


def test_a_token_of_someone_who_left_the_project_is_a_404(client, tokens, people, project, models):
    Membership.objects.filter(user=people["member"], project=project).delete()
    assert error_of(post(client, CHAT, tokens["member"], chat()), 404)["code"] == "not_found"
    error_of(post(client, MODERATIONS, tokens["member"], {"input": "hello"}), 404)
    assert not Job.objects.exists()


def test_no_token_and_a_bad_token_are_401(client, models):
    assert (
        client.post(CHAT, data=json.dumps(chat()), content_type="application/json").status_code
        == 401
    )
    error = error_of(post(client, CHAT, "atl_not-a-token", chat()), 401)
    assert error["code"] == "invalid_api_key"


def test_a_prompt_that_a_block_rule_matches_is_refused_before_any_job(
    client, tokens, models, project, people
):
    ruleset_current(project.pk)
    ruleset_save(project=project, rows=RULES, actor=people["admin"])
    body = chat(
        messages=[
            {"role": "user", "content": "tell me about forbidden-thing"},
            {"role": "assistant", "content": "no"},
            {"role": "user", "content": "please"},
        ]
    )
    error = error_of(post(client, CHAT, tokens["member"], body), 400)
    # An earlier turn matched: the whole conversation is checked, not only the last words.
    assert error["param"] == "messages" and "illicit" in error["message"]
    assert not Job.objects.exists()


def test_images_refuse_a_bad_size_too_many_images_and_unknown_formats(client, tokens, models):
    def refused(body: dict) -> str:
        return error_of(post(client, IMAGES, tokens["member"], body), 400)["param"]

    assert refused({"prompt": "a cat", "model": "tiny-sd", "size": "big"}) == "size"
    assert refused({"prompt": "a cat", "model": "tiny-sd", "size": "1000x1001"}) == "size"
    assert refused({"prompt": "a cat", "model": "tiny-sd", "n": 9}) == "n"
    assert refused({"prompt": "a cat", "model": "tiny-sd", "response_format": "png"}) == (
        "response_format"
    )
    assert refused({"model": "tiny-sd"}) == "prompt"
    assert not Job.objects.exists()


def media_files(settings) -> set:
    return {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}


def test_an_edit_of_a_file_that_is_not_an_image_leaves_nothing_behind(
    client, tokens, models, settings
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    before = media_files(settings)
    response = client.post(
        EDITS,
        data={
            "prompt": "a cat",
            "model": "tiny-sd",
            "image": SimpleUploadedFile("cat.png", b"not a png at all", "image/png"),
        },
        HTTP_AUTHORIZATION=f"Bearer {tokens['member']}",
    )
    error = error_of(response, 400)
    assert error["param"] == "image" and "cat.png" in error["message"]
    assert not Output.objects.exists() and not Job.objects.exists()
    # The media folder is shared by the run's tests: nothing new in it from this request.
    assert media_files(settings) == before


def test_an_edit_refused_by_its_parameters_keeps_no_upload(client, tokens, models, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), "blue").save(buffer, format="PNG")
    before = media_files(settings)
    response = client.post(
        EDITS,
        data={
            "prompt": "a cat",
            "model": "tiny-sd",
            "sampler": "no such sampler",
            "image": SimpleUploadedFile("cat.png", buffer.getvalue(), "image/png"),
        },
        HTTP_AUTHORIZATION=f"Bearer {tokens['member']}",
    )
    assert error_of(response, 400)["param"] == "sampler"
    assert not Output.objects.exists() and not Job.objects.exists()
    # The media folder is shared by the run's tests: nothing new in it from this request.
    assert media_files(settings) == before


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_mask_without_transparency_is_refused_and_leaves_nothing(
    client, tokens, models, settings
):
    """OpenAI's edit mask marks what to redraw by full transparency: an opaque mask says so, on
    the `mask` parameter, and neither the upload nor the mask stays."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    from apps.images.models import InpaintMask

    before = media_files(settings)
    response = client.post(
        EDITS,
        data={
            "prompt": "a cat",
            "model": "tiny-sd",
            "image": SimpleUploadedFile("cat.png", _png(Image.new("RGB", (32, 32), "blue"))),
            "mask": SimpleUploadedFile("m.png", _png(Image.new("RGB", (32, 32), "white"))),
        },
        HTTP_AUTHORIZATION=f"Bearer {tokens['member']}",
    )
    error = error_of(response, 400)
    assert error["param"] == "mask" and "transparen" in error["message"]
    assert not Output.objects.exists() and not Job.objects.exists()
    assert not InpaintMask.objects.exists() and media_files(settings) == before


@pytest.mark.django_db(transaction=True)
def test_an_edit_with_a_mask_redraws_only_its_transparent_part(client, tokens, models, settings):
    """/v1/images/edits with OpenAI's mask (transparent = edit) is an inpainting job: the pixels
    far from the hole (beyond the mask blur's reach) come back exactly as uploaded."""
    import base64

    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    rng = np.random.default_rng(3)
    original = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (24, 24, 40, 40))  # the hole: redraw the middle
    worker = _run_next_job("image.generate")
    response = client.post(
        EDITS,
        data={
            "prompt": "a cat",
            "model": "tiny-sd",
            "steps": 2,
            "seed": 5,
            "image": SimpleUploadedFile("cat.png", _png(original)),
            "mask": SimpleUploadedFile("mask.png", _png(mask)),
        },
        HTTP_AUTHORIZATION=f"Bearer {tokens['member']}",
    )
    worker.join(timeout=120)
    assert response.status_code == 200, response.content[:500]
    job = Job.objects.get(kind="image.generate")
    assert job.params["mask_id"] is not None
    edited = Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"])))
    before, after = np.asarray(original), np.asarray(edited.convert("RGB"))
    assert after.shape == before.shape
    margin = 3 * job.params["mask_blur"]  # the blurred edge reaches this far out
    outside = np.ones((64, 64), bool)
    outside[24 - margin : 40 + margin, 24 - margin : 40 + margin] = False
    assert outside.sum() > 1000
    assert (after[outside] == before[outside]).all()
    assert (after[24:40, 24:40] != before[24:40, 24:40]).any()


# --------------------------------------------------------------------------- moderations


def test_moderations_answer_openais_shape_from_the_projects_rules(
    client, tokens, project, people, models
):
    def check(texts: list[str]):
        response = post(client, MODERATIONS, tokens["member"], {"input": texts})
        assert response.status_code == 200, response.content
        return ModerationCreateResponse.model_validate(response.json()), response.json()

    # A new project has the default rule set.
    parsed, _ = check(["a calm sentence", "you are worthless"])
    calm, harassing = parsed.results
    assert not calm.flagged and not any(calm.categories.model_dump().values())
    assert harassing.flagged and harassing.categories.harassment
    assert harassing.category_scores.harassment == 1.0 and harassing.category_scores.hate == 0.0
    assert harassing.category_applied_input_types.harassment == ["text"]

    # The project's own rules answer once its admin changed them.
    ruleset_current(project.pk)
    ruleset_save(project=project, rows=RULES, actor=people["admin"])
    parsed, raw = check(["the zorblax is here", "you are worthless"])
    custom, no_longer = parsed.results
    assert custom.flagged and raw["results"][0]["categories"]["custom"] is True
    assert raw["results"][0]["atelier"]["hits"][0]["text"] == "zorblax"
    assert not no_longer.flagged
    assert parsed.model == "atelier-rules-v2" and parsed.id.startswith("modr-")


def test_moderations_refuse_empty_and_image_inputs(client, tokens, models):
    assert error_of(post(client, MODERATIONS, tokens["member"], {"input": []}), 400)["param"] == (
        "input"
    )
    body = {"input": [{"type": "image_url", "image_url": {"url": "data:"}}]}
    assert error_of(post(client, MODERATIONS, tokens["member"], body), 400)["param"] == "input.0"


# --------------------------------------------------------------------------- generation


def _run_next_job(kind: str) -> threading.Thread:
    """A worker in a thread: runs the next job of `kind` once the request has made it."""
    from workers.tasks.runtime import execute_job

    def work() -> None:
        try:
            for _ in range(2000):
                job = Job.objects.filter(kind=kind, state="queued").first()
                if job is not None:
                    execute_job(job.pk, worker_id="test")
                    return
                threading.Event().wait(0.01)
        finally:
            connection.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_chat_completion_is_a_textgen_job_whose_output_is_the_answer(
    client, tokens, models, member
):
    worker = _run_next_job("textgen")
    body = chat(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "How are you?"},
        ],
        max_tokens=12,
        temperature=0,
        seed=5,
    )
    response = post(client, CHAT, tokens["member"], body)
    worker.join(timeout=120)
    assert response.status_code == 200, response.content[:500]
    answer = ChatCompletion.model_validate(response.json())
    job = Job.objects.get(kind="textgen")
    output = Output.objects.get(job=job)
    assert answer.choices[0].message.content == output.text
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens == output.metrics["tokens"] <= 12
    assert answer.usage.prompt_tokens == output.metrics["prompt_tokens"] > 0
    assert answer.id == f"chatcmpl-{job.pk}" and answer.model == "tiny-llama"
    # The job records the whole conversation and its author; the output keeps the last question.
    assert job.created_by == member and job.params["seed"] == 5
    assert [m["role"] for m in job.params["messages"]] == ["system", "user", "assistant", "user"]
    assert output.prompt == "How are you?" and output.created_by == member
    assert "<|assistant|>\nHello.</s>" in output.params["rendered_prompt"]


@pytest.mark.django_db(transaction=True)
def test_a_streamed_completion_sends_exactly_the_text_the_output_keeps(client, tokens, models):
    response = post(
        client,
        CHAT,
        tokens["member"],
        chat(stream=True, max_tokens=16, stream_options={"include_usage": True}),
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    job = Job.objects.get(kind="textgen")
    assert 0 <= job.params["seed"] < 2**31  # drawn and recorded: a retried attempt says the same
    from workers.tasks.runtime import execute_job

    execute_job(job.pk, worker_id="test")  # done before the stream is read: replayed from the DB

    async def read() -> list[bytes]:
        parts = [part async for part in response.streaming_content]
        # The replay read the database on asgiref's executor thread: close its connection.
        await database_sync_to_async(connections.close_all)()
        return parts

    raw = b"".join(asyncio.run(read())).decode()
    frames = [f[len("data: ") :] for f in raw.split("\n\n") if f]
    assert frames[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(f)) for f in frames[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    output = Output.objects.get(job=job)
    assert text == output.text and text
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert (
        chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == output.metrics["tokens"]
    )


@pytest.mark.django_db(transaction=True)
def test_a_stop_sequence_ends_the_text_before_it(client, tokens, models):
    worker = _run_next_job("textgen")
    free = post(
        client,
        COMPLETIONS,
        tokens["member"],
        {"model": "tiny-llama", "prompt": "The", "max_tokens": 40, "temperature": 0},
    )
    worker.join(timeout=120)
    text = free.json()["choices"][0]["text"]
    assert len(text) > 4, text
    stop = text[2:4]
    worker = _run_next_job("textgen")
    cut = post(
        client,
        COMPLETIONS,
        tokens["member"],
        {"model": "tiny-llama", "prompt": "The", "max_tokens": 40, "temperature": 0, "stop": stop},
    )
    worker.join(timeout=120)
    choice = cut.json()["choices"][0]
    assert choice["text"] == text[: text.index(stop)] and choice["finish_reason"] == "stop"
    assert Output.objects.order_by("-pk").first().text == choice["text"]


@pytest.mark.django_db(transaction=True)
def test_an_image_generation_answers_the_gallery_pngs_as_base64(client, tokens, models, settings):
    import base64

    from PIL import Image

    worker = _run_next_job("image.generate")
    body = {"prompt": "a cat", "model": "tiny-sd", "size": "32x32", "n": 2, "steps": 2, "seed": 9}
    response = post(client, IMAGES, tokens["member"], body)
    worker.join(timeout=120)
    assert response.status_code == 200, response.content[:500]
    data = response.json()
    outputs = list(Output.objects.filter(kind="image").order_by("seed"))
    assert [o.seed for o in outputs] == [9, 10] == data["atelier"]["seeds"]
    for item, output in zip(data["data"], outputs, strict=True):
        png = base64.b64decode(item["b64_json"])
        assert Image.open(io.BytesIO(png)).size == (32, 32)
        assert png == (settings.MEDIA_ROOT / output.file_path).read_bytes()


@pytest.mark.django_db(transaction=True)
def test_image_urls_are_signed_links_that_expire_and_follow_the_users_access(
    client, tokens, models, settings, people, project
):
    """response_format "url": each image as an absolute link that works without a login (as
    OpenAI's do) and serves the gallery's PNG; a forged, expired or revoked link is a 404."""
    from django.test import Client

    from apps.projects.models import Membership

    settings.ATELIER = {**settings.ATELIER, "PUBLIC_URL": ""}
    worker = _run_next_job("image.generate")
    body = {"prompt": "a cat", "model": "tiny-sd", "size": "32x32", "n": 2, "steps": 2, "seed": 9}
    response = post(client, IMAGES, tokens["member"], {**body, "response_format": "url"})
    worker.join(timeout=120)
    assert response.status_code == 200, response.content[:500]
    data = response.json()["data"]
    outputs = list(Output.objects.filter(kind="image").order_by("seed"))
    assert len(data) == 2 and all("b64_json" not in item or not item["b64_json"] for item in data)
    stranger = Client()  # no session, no token: the link itself is the permission
    for item, output in zip(data, outputs, strict=True):
        url = item["url"]
        assert url.startswith("http://testserver/links/"), url
        fetched = stranger.get(url.removeprefix("http://testserver"))
        assert fetched.status_code == 200 and fetched["Content-Type"] == "image/png"
        assert (
            b"".join(fetched.streaming_content)
            == (settings.MEDIA_ROOT / output.file_path).read_bytes()
        )
    path = data[0]["url"].removeprefix("http://testserver")
    token = path.split("/")[2]
    forged = path.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert stranger.get(forged).status_code == 404
    settings.ATELIER = {**settings.ATELIER, "SIGNED_LINK_SECONDS": -1}
    assert stranger.get(path).status_code == 404  # expired
    settings.ATELIER = {**settings.ATELIER, "SIGNED_LINK_SECONDS": 3600}
    assert stranger.get(path).status_code == 200
    Membership.objects.filter(project=project, user=people["member"]).delete()
    assert stranger.get(path).status_code == 404  # the user it was made for left the project

    # A deployment that names its address gets links on it, whatever host the call came in by.
    settings.ATELIER = {**settings.ATELIER, "PUBLIC_URL": "https://atelier.example.com"}
    from webapp.public_url import absolute_url

    assert absolute_url(path) == "https://atelier.example.com" + path


JUNK_BODIES = [
    "not json",
    "[]",
    "null",
    json.dumps({"model": 5, "messages": "hi"}),
    json.dumps({"model": "tiny-llama", "messages": [{"role": "user", "content": 5}]}),
    json.dumps({"model": "tiny-llama", "messages": [{"content": "x"}]}),
    json.dumps({"model": "tiny-llama", "messages": [{"role": "user", "content": [5]}]}),
    json.dumps({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "stop": 5}),
    json.dumps({"model": "tiny-llama", "messages": [{"role": "user", "content": "x" * 30000}]}),
    json.dumps({"model": "tiny-llama", "prompt": {"a": 1}, "seed": -1, "max_tokens": 1e20}),
    json.dumps({"model": "tiny-llama", "prompt": "x", "temperature": "hot", "n": "x"}),
    json.dumps({"model": "ft:tiny-llama::99999", "prompt": "x", "stream": "maybe"}),
    json.dumps({"prompt": ["x"], "size": 5, "n": 0, "model": "tiny-sd", "seed": 2**40}),
    json.dumps({"input": 5}),
    json.dumps({"input": [5, None]}),
    json.dumps({"input": "x" * 200_000}),
]


@pytest.mark.parametrize("url", [CHAT, COMPLETIONS, IMAGES, MODERATIONS])
def test_junk_bodies_are_400s_in_openais_shape_never_server_errors(client, tokens, models, url):
    for body in JUNK_BODIES:
        response = client.post(
            url,
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {tokens['member']}",
        )
        assert response.status_code in (200, 400, 404), (body[:80], response.content[:300])
        if response.status_code != 200:
            assert response.json()["error"]["type"].endswith("_error"), body[:80]
    assert not Job.objects.filter(state="running").exists()


def test_a_junk_edit_form_is_a_400(client, tokens, models):
    from django.core.files.uploadedfile import SimpleUploadedFile

    auth = {"HTTP_AUTHORIZATION": f"Bearer {tokens['member']}"}
    for data in (
        {"prompt": "a cat"},  # no image
        {"image": SimpleUploadedFile("a.png", b"x", "image/png")},  # no prompt
        {"prompt": "a cat", "n": "many", "image": SimpleUploadedFile("a.png", b"x")},
        {"prompt": "a cat", "strength": "2", "image": SimpleUploadedFile("a.png", b"x")},
    ):
        response = client.post(EDITS, data=data, **auth)
        assert response.status_code == 400, response.content[:300]
        assert response.json()["error"]["param"]
    assert not Output.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_re_queued_attempt_that_streams_its_text_again_is_not_sent_twice(
    client, tokens, models, member
):
    """A worker died mid-answer and the job ran again from the start (same seed, same text):
    the stream sends each character once."""
    from apps.api.openai_compat.chat import Submitted, completion_stream
    from apps.jobs.services import job_append_events

    response = post(client, CHAT, tokens["member"], chat(stream=True, seed=3))
    assert response.status_code == 200
    job = Job.objects.get(kind="textgen")
    job_append_events(
        job_id=job.pk,
        events=[
            ("state", {"state": "running", "attempt": 1}),
            ("text", {"index": 0, "delta": "Hel"}),
            ("state", {"state": "queued", "attempt": 1, "message": "re-queued"}),
            ("state", {"state": "running", "attempt": 2}),
            ("text", {"index": 0, "delta": "He"}),
            ("text", {"index": 0, "delta": "llo wor"}),
            ("text", {"index": 0, "delta": "ld"}),
        ],
    )
    result = {
        "runs": [{"text": "Hello world", "tokens": 3, "prompt_tokens": 5, "finish_reason": "eos"}]
    }
    Job.objects.filter(pk=job.pk).update(state="succeeded", result=result)
    job_append_events(job_id=job.pk, events=[("state", {"state": "succeeded", "attempt": 2})])
    sub = Submitted(job_id=job.pk, model="tiny-llama", created=0, chat=True, include_usage=False)

    async def read() -> str:
        parts = [part async for part in completion_stream(sub, member)]
        await database_sync_to_async(connections.close_all)()
        return b"".join(parts).decode()

    frames = [f[len("data: ") :] for f in asyncio.run(read()).split("\n\n") if f]
    chunks = [json.loads(f) for f in frames[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Hello world" and frames[-1] == "[DONE]"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert Job.objects.get(pk=job.pk).state == "succeeded"  # a finished stream cancels nothing
