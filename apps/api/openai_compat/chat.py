"""/v1/chat/completions and /v1/completions: OpenAI's text generation shapes over `textgen` jobs.

A request is an ordinary job of the playground's kind, submitted as the token's user with
job_create (the kind's checks, the prompt moderation, quotas and the audit log apply as on the
page), run by a gpu worker, its answer saved as a text Output (reviewed and moderated like any
other). `model` is a base text model or an ``ft:`` adapter of the token's project (naming.py).

Streaming (`stream: true`) answers Server-Sent Events as OpenAI does (`data: {chunk}` …
`data: [DONE]`): the job's streamed text events are followed live (streaming.JobFollower: the
job's channel-layer group, gaps read from the database), so no text is lost or sent twice, even
across a re-queued attempt. A client that goes away mid-stream cancels the job. Without `stream`
the request waits for the job and answers the whole completion with its token usage.

No seed given: one is drawn here and recorded, so the job (and a retried attempt of it) always
makes the same text. Supported: n = 1, `stop` (up to 4 sequences), temperature, top_p, seed,
max_tokens / max_completion_tokens; `top_k` and `repetition_penalty` as extensions. Not
supported (400 naming the parameter): n > 1, tools and functions, logprobs, penalties other
than 0, suffix, image or audio content.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Router, Schema

from apps.api.errors import ApiError
from apps.api.openai_compat.common import token_project
from apps.api.openai_compat.naming import resolve_model
from apps.api.openai_compat.streaming import (
    SSE_DONE,
    JobFollower,
    cancel_job,
    is_terminal,
    refusal,
    sse,
    wait_for_job,
)
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.jobs.states import JobState
from apps.outputs.models import Output

router = Router(tags=["chat"])

WAIT_SECONDS = 600.0  # a request without `stream` waits this long for its job, then gives up
MAX_TOKENS = 4096  # the textgen kind's ceiling; the model's context cuts it further
CHAT_DEFAULT_TOKENS = MAX_TOKENS  # OpenAI: until the answer ends (or the context is full)
COMPLETION_DEFAULT_TOKENS = 16  # OpenAI's default for /v1/completions
SEED_RANGE = 2**31
FINISH = {"eos": "stop", "stop": "stop", "length": "length", "stopped": "stop"}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


# --------------------------------------------------------------------------- request shapes


class StreamOptions(Schema):
    include_usage: bool = False


class ChatMessage(Schema):
    role: str = Field(..., description="system, developer (as system), user or assistant")
    # A string, or a list of content parts of which only {"type": "text"} is supported.
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class Sampling(Schema):
    """What both endpoints take. Unknown fields are ignored, as OpenAI-compatible servers do."""

    model_config = {"extra": "ignore"}

    model: str = Field(..., min_length=1, max_length=300)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | int | None = None
    user: str | None = Field(None, max_length=300)
    # Atelier's extensions (sampling settings the playground has).
    top_k: int | None = Field(None, ge=0, le=1000)
    repetition_penalty: float | None = Field(None, ge=0.5, le=3)


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=200)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(Sampling):
    prompt: str | list[Any] = Field(..., description="A string (or a list of one string)")
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=20)


# --------------------------------------------------------------------------- validation


def _unsupported(param: str, message: str) -> ApiError:
    return ApiError(400, message, code="unsupported_parameter", param=param)


def _check_common(body: Sampling) -> None:
    if body.n not in (None, 1):
        raise _unsupported("n", "Only n=1 is supported: send one request per completion.")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(body, name):
            raise _unsupported(
                name, f"{name} is not supported; use repetition_penalty (an extension) instead."
            )
    if body.logprobs:
        raise _unsupported("logprobs", "logprobs are not supported.")


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4:
        raise ApiError(400, "At most 4 stop sequences.", param="stop")
    if any(not s or len(s) > 200 for s in stops):
        raise ApiError(400, "Each stop sequence must be 1 to 200 characters.", param="stop")
    return stops


def _content(message: ChatMessage, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise _unsupported(
                f"messages.{index}.content",
                "Only text content parts are supported (no images, audio or files).",
            )
        texts.append(part["text"])
    return "".join(texts)


def _conversation(body: ChatCompletionRequest) -> list[dict[str, str]]:
    turns = []
    for i, message in enumerate(body.messages):
        role = ROLES.get(message.role)
        if role is None:
            raise _unsupported(
                f"messages.{i}.role",
                f"Role {message.role!r} is not supported: use system, developer, user or "
                "assistant (tools and functions are not offered).",
            )
        turns.append({"role": role, "content": _content(message, i)})
    if not any(t["content"].strip() for t in turns):
        raise ApiError(400, "The messages hold no text.", param="messages")
    return turns


def _check_chat(body: ChatCompletionRequest) -> None:
    for name in ("tools", "functions", "tool_choice", "function_call", "top_logprobs"):
        if getattr(body, name) not in (None, [], "none", 0):
            raise _unsupported(name, f"{name} is not supported by Atelier's models.")
    kind = (body.response_format or {}).get("type", "text")
    if kind != "text":
        raise _unsupported("response_format", "Only response_format {'type': 'text'}.")


# --------------------------------------------------------------------------- submitting


@dataclass(frozen=True)
class Submitted:
    """A generation request turned into a job, and what its answer needs to say."""

    job_id: int
    model: str
    created: int
    chat: bool
    include_usage: bool
    echo: str = ""

    @property
    def id(self) -> str:
        return f"{'chatcmpl' if self.chat else 'cmpl'}-{self.job_id}"


# The textgen kind's fields by the name the client used for them.
PARAM_NAMES = {
    "base_model_id": "model",
    "adapter_ids": "model",
    "max_new_tokens": "max_tokens",
    "system": "messages",
}


def _submit(
    request: HttpRequest,
    body: Sampling,
    *,
    prompt: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    chat: bool,
    echo: str = "",
) -> Submitted:
    access = token_project(request, need="launch_job")
    base, adapter = resolve_model(access, body.model, kind="text")
    temperature = 1.0 if body.temperature is None else body.temperature
    top_p = 1.0 if body.top_p is None else body.top_p
    if top_p == 0:  # nothing but the likeliest token: greedy decoding
        temperature, top_p = 0.0, 1.0
    params = {
        "base_model_id": base.pk,
        "adapter_ids": [adapter.pk if adapter else None],
        "prompt": prompt,
        "messages": messages,
        "use_chat_template": chat,
        "max_new_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": body.top_k or 0,
        "repetition_penalty": body.repetition_penalty or 1.0,
        "seed": body.seed if body.seed is not None else secrets.randbelow(SEED_RANGE),
        "stop": _stops(body.stop),
    }
    try:
        job = job_services.job_create(
            project=access.project,
            kind="textgen",
            params=params,
            created_by=request.user,
            request=request,
        )
    except job_services.JobParamsError as exc:
        raise refusal(exc, {**PARAM_NAMES, "prompt": "messages" if chat else "prompt"}) from None
    return Submitted(
        job_id=job.pk,
        model=body.model,
        created=int(time.time()),
        chat=chat,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        echo=echo,
    )


# --------------------------------------------------------------------------- answers


def _run(job: Job) -> dict[str, Any]:
    runs = (job.result or {}).get("runs") or [{}]
    return runs[0]


def _usage(run: dict[str, Any]) -> dict[str, int]:
    prompt = int(run.get("prompt_tokens") or 0)
    completion = int(run.get("tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _failure(job: Job) -> ApiError:
    """A job that did not succeed, as an error the client can act on (and must not retry)."""
    if job.state == JobState.CANCELLED:
        return ApiError(
            409,
            f"The generation (job {job.pk}) was cancelled.",
            code="job_cancelled",
            headers={"x-should-retry": "false"},
        )
    return ApiError(
        500,
        f"The generation (job {job.pk}) failed: {job.error.strip()[:1000] or 'no reason given'}",
        code="generation_failed",
        headers={"x-should-retry": "false"},
    )


def _atelier(job: Job, run: dict[str, Any]) -> dict[str, Any]:
    """Atelier's own fields: the job, the Output that keeps the answer, the seed it used."""
    output_id = run.get("output_id")
    moderation = (
        Output.objects.filter(pk=output_id).values_list("moderation", flat=True).first()
        if output_id
        else None
    )
    return {
        "job_id": job.pk,
        "output_id": output_id,
        "seed": run.get("seed"),
        "moderation": moderation,
    }


def _answer(sub: Submitted, job: Job) -> dict[str, Any]:
    run = _run(job)
    finish = FINISH.get(str(run.get("finish_reason")), "stop")
    if sub.chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": run.get("text", ""), "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }
    else:
        choice = {
            "index": 0,
            "text": sub.echo + run.get("text", ""),
            "logprobs": None,
            "finish_reason": finish,
        }
    return {
        "id": sub.id,
        "object": "chat.completion" if sub.chat else "text_completion",
        "created": sub.created,
        "model": sub.model,
        "system_fingerprint": None,
        "choices": [choice],
        "usage": _usage(run),
        "atelier": _atelier(job, run),
    }


def _respond(request: HttpRequest, sub: Submitted, stream: bool):
    if stream:
        response = StreamingHttpResponse(
            completion_stream(sub, request.user), content_type="text/event-stream; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # proxies must pass each event on at once
        return response
    job = async_to_sync(wait_for_job)(sub.job_id, timeout=WAIT_SECONDS)
    if job is None:
        cancel_job(sub.job_id, request.user)
        raise ApiError(
            504,
            f"The generation (job {sub.job_id}) did not finish within {WAIT_SECONDS:.0f} s; "
            "it was cancelled. Try stream=true to see text as it comes.",
            code="timeout",
        )
    if job.state != JobState.SUCCEEDED:
        raise _failure(job)
    return _answer(sub, job)


# --------------------------------------------------------------------------- streaming


def _chunk(sub: Submitted, *, delta: str = "", role: bool = False, finish=None) -> dict:
    if sub.chat:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": {"role": "assistant", "content": delta} if role else {"content": delta},
            "logprobs": None,
            "finish_reason": finish,
        }
        if finish is not None:
            choice["delta"] = {}
    else:
        choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
    chunk = {
        "id": sub.id,
        "object": "chat.completion.chunk" if sub.chat else "text_completion",
        "created": sub.created,
        "model": sub.model,
        "system_fingerprint": None,
        "choices": [choice],
    }
    if sub.include_usage:
        chunk["usage"] = None
    return chunk


def _finished(job_id: int) -> Job:
    return Job.objects.get(pk=job_id)


async def completion_stream(sub: Submitted, user) -> AsyncIterator[bytes]:
    """The job's text as OpenAI's stream. Characters already sent are counted, so an attempt
    that starts over (a re-queued job: same seed, same text) sends only what is new."""
    done = False
    try:
        if sub.chat:
            yield sse(_chunk(sub, role=True))
        if sub.echo:
            yield sse(_chunk(sub, delta=sub.echo))
        sent = 0  # characters of the answer sent so far
        this_attempt = 0  # characters the current attempt has streamed
        async with JobFollower(sub.job_id) as follower:
            while not done:
                for event in await follower.next_events():
                    data = event.get("data") or {}
                    if event["kind"] == "state" and data.get("state") == JobState.RUNNING:
                        this_attempt = 0
                    elif event["kind"] == "text" and data.get("index", 0) == 0:
                        delta = str(data.get("delta") or "")
                        start, this_attempt = this_attempt, this_attempt + len(delta)
                        if this_attempt > sent:
                            piece, sent = delta[max(0, sent - start) :], this_attempt
                            yield sse(_chunk(sub, delta=piece))
                    elif is_terminal(event):
                        done = True
                        job = await database_sync_to_async(_finished)(sub.job_id)
                        async for tail in _ending(sub, job):
                            yield tail
                        break
    finally:
        if not done:  # the client went away (or the stream broke): stop generating for it
            await database_sync_to_async(cancel_job)(sub.job_id, user)


async def _ending(sub: Submitted, job: Job) -> AsyncIterator[bytes]:
    if job.state != JobState.SUCCEEDED:
        error = _failure(job)
        # The openai client raises APIError for an event that carries "error".
        yield sse({"error": {"message": error.message, "type": "server_error", "code": error.code}})
        return
    run = _run(job)
    yield sse(_chunk(sub, finish=FINISH.get(str(run.get("finish_reason")), "stop")))
    if sub.include_usage:
        yield sse({**_chunk(sub), "choices": [], "usage": _usage(run)})
    yield SSE_DONE


# --------------------------------------------------------------------------- endpoints


@router.post("/chat/completions", url_name="chat_completions")
def chat_completions(request: HttpRequest, body: ChatCompletionRequest):
    """A chat completion from a base text model or an `ft:` adapter of the token's project."""
    _check_common(body)
    _check_chat(body)
    messages = _conversation(body)
    last_user = next(
        (t["content"] for t in reversed(messages) if t["role"] == "user" and t["content"]), ""
    )
    prompt = last_user or next(t["content"] for t in reversed(messages) if t["content"])
    sub = _submit(
        request,
        body,
        prompt=prompt,
        messages=messages,
        max_tokens=body.max_completion_tokens or body.max_tokens or CHAT_DEFAULT_TOKENS,
        chat=True,
    )
    return _respond(request, sub, bool(body.stream))


@router.post("/completions", url_name="completions")
def completions(request: HttpRequest, body: CompletionRequest):
    """A plain continuation of `prompt` (no chat template)."""
    _check_common(body)
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise _unsupported(
                "prompt", "prompt must be a string (or a list of one string; no token ids)."
            )
        prompt = prompt[0]
    if body.suffix:
        raise _unsupported("suffix", "suffix (insertion) is not supported.")
    if body.best_of not in (None, 1):
        raise _unsupported("best_of", "Only best_of=1 is supported.")
    sub = _submit(
        request,
        body,
        prompt=prompt,
        messages=[],
        max_tokens=body.max_tokens or COMPLETION_DEFAULT_TOKENS,
        chat=False,
        echo=prompt if body.echo else "",
    )
    return _respond(request, sub, bool(body.stream))
