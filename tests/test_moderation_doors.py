"""Issue 12, item 3: one visibility rule, and every door obeys it.

A flagged or rejected output is seen only by its author, reviewers and admins. DOORS lists every
way an output, its text, its image, its preview or its parameters reaches a user, as
tests/test_authorization.py lists routes. Each door is tried with a flagged, a rejected and an
approved output made by member A: as another member B (it must stay shut unless the output is
approved), as a reviewer (an admin for the doors that launch jobs: reviewers cannot) and as A.
A new route with <output_id> in its pattern fails `test_every_output_route_is_a_door` until it
is listed here.

Also: a prompt a submit check refuses creates no Job row and sends nothing to a worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from apps.jobs import registry
from apps.jobs.models import Job
from apps.jobs.services import JobParamsError, job_append_events, job_claim, job_create
from apps.models.models import AssetKind, BaseModel, ImageAsset
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Collection, Output
from apps.projects.models import Membership, Project
from apps.provenance.models import ProvenanceRecord
from tests.factories import job_succeed, make_job, make_output
from tests.test_authorization import http_routes, ws_routes
from webapp.asgi import application

IMAGE_PROMPT = "a lighthouse in violet fog"
TEXT_PROMPT = "Describe the quarantined harbour"
SECRET_TEXT = "zebra-quokka-7731 says hello"
PREVIEW_URL = "data:image/png;base64,UFJFVklFVy1TRUNSRVQ="
STATES = ("flagged", "rejected", "approved")


@dataclass
class World:
    project: Project
    author: object  # member A, who made the outputs
    other: object  # member B
    reviewer: object
    admin: object
    image: Output
    text: Output
    image_job: Job
    text_job: Job
    board: Collection
    sd: BaseModel
    controlnet: ImageAsset


def _png(path: Path, size: int = 32) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), "violet").save(path)


def _image_output(project, author, job, moderation: str) -> Output:
    rel = Path("outputs") / str(project.pk)
    _png(Path(django_settings.MEDIA_ROOT) / rel / f"door-{job.pk}.png")
    _png(Path(django_settings.MEDIA_ROOT) / rel / f"door-{job.pk}.thumb.png", size=16)
    return make_output(
        project,
        author,
        job=job,
        kind="image",
        prompt=IMAGE_PROMPT,
        params={"prompt": IMAGE_PROMPT, "seed": 4242, "steps": 2},
        seed=4242,
        file_path=str(rel / f"door-{job.pk}.png"),
        thumb_path=str(rel / f"door-{job.pk}.thumb.png"),
        width=32,
        height=32,
        moderation=moderation,
    )


def _image_result(project, output: Output) -> dict:
    ids = {"project_id": project.pk, "output_id": output.pk}
    entry = {
        "id": output.pk,
        "output_id": output.pk,
        "url": reverse("galleries:output", kwargs=ids),
        "thumb_url": reverse("galleries:file", kwargs={**ids, "which": "thumb"}),
    }
    return {"outputs": [entry], "model_loaded": False}


@pytest.fixture
def make_world(project, people, make_user, tmp_path, settings) -> Callable[[str], World]:
    """A's finished image and text jobs, their outputs (in the given moderation state), their
    streamed preview and text, a board holding both, and a ControlNet to name."""

    def build(moderation: str) -> World:
        settings.MODELS_DIR = tmp_path / "models"
        ensure_builtin_rows()
        author = people["member"]
        other = make_user("member-b")
        Membership.objects.create(project=project, user=other, role="member")
        sd = BaseModel.objects.get(reference="tiny-sd")
        llama = BaseModel.objects.get(reference="tiny-llama")
        image_job = make_job(
            project, author, "image.generate", model_id=sd.pk, prompt=IMAGE_PROMPT, steps=2
        )
        text_job = make_job(project, author, "textgen", base_model_id=llama.pk, prompt=TEXT_PROMPT)
        image = _image_output(project, author, image_job, moderation)
        text = make_output(
            project,
            author,
            job=text_job,
            prompt=TEXT_PROMPT,
            text=SECRET_TEXT,
            moderation=moderation,
        )
        job_succeed(
            image_job,
            events=[("preview", {"url": PREVIEW_URL, "width": 32, "height": 32})],
            result=_image_result(project, image),
        )
        job_succeed(
            text_job,
            events=[("text", {"index": 0, "delta": SECRET_TEXT})],
            result={"runs": [{"output_id": text.pk, "text": SECRET_TEXT, "seed": 1}]},
        )
        board = Collection.objects.create(project=project, name="Doors", created_by=author)
        board.outputs.add(image, text)
        controlnet = ImageAsset.objects.create(
            kind=AssetKind.CONTROLNET, name="door-canny", path=str(tmp_path / "controlnet")
        )
        return World(
            project=project,
            author=author,
            other=other,
            reviewer=people["reviewer"],
            admin=people["admin"],
            image=image,
            text=text,
            image_job=image_job,
            text_job=text_job,
            board=board,
            sd=sd,
            controlnet=controlnet,
        )

    return build


# --------------------------------------------------------------------------- the doors


def _get(client: Client, name: str, *args, query: dict | None = None):
    url = reverse(name, args=args) + ("?" + urlencode(query) if query else "")
    return client.get(url)


def _page(client: Client, name: str, *args, query: dict | None = None) -> str:
    response = _get(client, name, *args, query=query)
    assert response.status_code == 200, (name, response.status_code)
    return response.content.decode()


def _found(response, *, ok: tuple[int, ...] = (200,)) -> bool:
    """A direct route: True when it served the output, False for its 404."""
    assert response.status_code in (*ok, 404), response.status_code
    return response.status_code != 404


def _detail(w: World, output: Output) -> str:
    return reverse("galleries:output", args=[w.project.pk, output.pk])


def _api_json(client: Client, name: str, *args) -> str:
    response = _get(client, name, *args)
    assert response.status_code == 200, response.content[:300]
    return json.dumps(response.json())


def _api_submit(client: Client, w: World, kind: str, params: dict, field: str) -> bool:
    """A job whose params name the output: True when it was created, False when refused with
    an error on `field` (and no job row made)."""
    before = Job.objects.count()
    response = client.post(
        reverse("api:jobs", args=[w.project.pk]),
        data=json.dumps({"kind": kind, "params": params}),
        content_type="application/json",
    )
    if response.status_code == 400:
        assert field in response.json()["error"]["fields"], response.json()
        assert Job.objects.count() == before
        return False
    assert response.status_code == 201, response.content[:300]
    return True


def _image_params(w: World, **extra) -> dict:
    return {"model_id": w.sd.pk, "prompt": "a boat", "width": 32, "height": 32, "steps": 2, **extra}


def _socket_messages(client: Client, w: World, job: Job) -> str:
    """Everything the job's websocket replays (a finished job: replay, then close)."""
    session = client.cookies["sessionid"].value
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={session}".encode()),
    ]

    async def replay() -> list[str]:
        ws = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        connected, _ = await ws.connect(timeout=5)
        assert connected
        texts = []
        while True:
            out = await ws.receive_output(timeout=5)
            if out["type"] == "websocket.close":
                return texts
            texts.append(out["text"])

    return "\n".join(async_to_sync(replay)())


@dataclass(frozen=True)
class Door:
    name: str
    reach: Callable[[Client, World], bool]
    route: str  # the URL name (or websocket route) it goes through
    launches: bool = False  # needs launch_job: the privileged persona is an admin
    socket: bool = False  # a websocket: needs committed rows (transactional test)


DOORS = [
    Door(
        "gallery grid: image",
        lambda c, w: _detail(w, w.image) in _page(c, "galleries:index", w.project.pk),
        "galleries:index",
    ),
    Door(
        "gallery grid: text",
        lambda c, w: _detail(w, w.text) in _page(c, "galleries:index", w.project.pk),
        "galleries:index",
    ),
    Door(
        "gallery search",
        lambda c, w: (
            _detail(w, w.text) in _page(c, "galleries:index", w.project.pk, query={"q": "quokka"})
        ),
        "galleries:index",
    ),
    Door(
        "board",
        lambda c, w: (
            _detail(w, w.image)
            in _page(c, "galleries:index", w.project.pk, query={"collection": w.board.pk})
        ),
        "galleries:index",
    ),
    Door(
        "output page",
        lambda c, w: _found(_get(c, "galleries:output", w.project.pk, w.image.pk)),
        "galleries:output",
    ),
    Door(
        "output page: text",
        lambda c, w: _found(_get(c, "galleries:output", w.project.pk, w.text.pk)),
        "galleries:output",
    ),
    Door(
        "image file",
        lambda c, w: _found(_get(c, "galleries:file", w.project.pk, w.image.pk, "image")),
        "galleries:file",
    ),
    Door(
        "thumbnail",
        lambda c, w: _found(_get(c, "galleries:file", w.project.pk, w.image.pk, "thumb")),
        "galleries:file",
    ),
    Door(
        "download",
        lambda c, w: _found(
            _get(c, "galleries:file", w.project.pk, w.image.pk, "image", query={"download": "1"})
        ),
        "galleries:file",
    ),
    Door(
        "PNG info: reuse an output's parameters in the image form",
        lambda c, w: (
            f">{IMAGE_PROMPT}</textarea>"
            in _page(c, "images:index", w.project.pk, query={"reuse": w.image.pk})
        ),
        "images:index",
    ),
    Door(
        "images page: recent",
        lambda c, w: f'data-output-id="{w.image.pk}"' in _page(c, "images:index", w.project.pk),
        "images:index",
    ),
    Door(
        "playground: recent outputs",
        lambda c, w: SECRET_TEXT in _page(c, "playground:index", w.project.pk),
        "playground:index",
    ),
    Door(
        "job page: images",
        lambda c, w: (
            reverse("galleries:file", args=[w.project.pk, w.image.pk, "thumb"])
            in _page(c, "jobs:detail", w.project.pk, w.image_job.pk)
        ),
        "jobs:detail",
    ),
    Door(
        "job page: prompt",
        lambda c, w: TEXT_PROMPT in _page(c, "jobs:detail", w.project.pk, w.text_job.pk),
        "jobs:detail",
    ),
    Door(
        "API job: generated text in the result",
        lambda c, w: SECRET_TEXT in _api_json(c, "api:job", w.project.pk, w.text_job.pk),
        "api:job",
    ),
    Door(
        "API job: images in the result",
        lambda c, w: _detail(w, w.image) in _api_json(c, "api:job", w.project.pk, w.image_job.pk),
        "api:job",
    ),
    Door(
        "API job: prompt",
        lambda c, w: TEXT_PROMPT in _api_json(c, "api:job", w.project.pk, w.text_job.pk),
        "api:job",
    ),
    Door(
        "API jobs list: results and prompts",
        lambda c, w: any(
            secret in _api_json(c, "api:jobs", w.project.pk)
            for secret in (SECRET_TEXT, TEXT_PROMPT, IMAGE_PROMPT, _detail(w, w.image))
        ),
        "api:jobs",
    ),
    Door(
        "API events: text",
        lambda c, w: SECRET_TEXT in _api_json(c, "api:job_events", w.project.pk, w.text_job.pk),
        "api:job_events",
    ),
    Door(
        "API events: previews",
        lambda c, w: PREVIEW_URL in _api_json(c, "api:job_events", w.project.pk, w.image_job.pk),
        "api:job_events",
    ),
    Door(
        "websocket: text",
        lambda c, w: SECRET_TEXT in _socket_messages(c, w, w.text_job),
        "ws:ws/jobs/<int:job_id>/",
        socket=True,
    ),
    Door(
        "websocket: previews",
        lambda c, w: PREVIEW_URL in _socket_messages(c, w, w.image_job),
        "ws:ws/jobs/<int:job_id>/",
        socket=True,
    ),
    Door(
        "upscale from the gallery",
        lambda c, w: (
            _found(
                c.post(
                    reverse("galleries:upscale", args=[w.project.pk, w.image.pk]),
                    {"upscaler": "lanczos", "scale": "2"},
                ),
                ok=(302,),
            )
            and Job.objects.filter(kind="image.upscale", params__output_id=w.image.pk).exists()
        ),
        "galleries:upscale",
        launches=True,
    ),
    Door(
        "add to a board",
        lambda c, w: _found(
            c.post(
                reverse("galleries:collection_toggle", args=[w.project.pk, w.image.pk]),
                {"collection": w.board.pk},
            ),
            ok=(302,),
        ),
        "galleries:collection_toggle",
        launches=True,
    ),
    Door(
        # Found means 302 (deleted: the author) or 403 (seen, but not hers to delete).
        "delete",
        lambda c, w: _found(
            c.post(reverse("galleries:delete", args=[w.project.pk, w.image.pk])), ok=(302, 403)
        ),
        "galleries:delete",
    ),
    Door(
        "API submit: upscale (output_id)",
        lambda c, w: _api_submit(
            c, w, "image.upscale", {"output_id": w.image.pk, "scale": 2}, "output_id"
        ),
        "api:jobs",
        launches=True,
    ),
    Door(
        "API submit: img2img (init_output_id)",
        lambda c, w: _api_submit(
            c, w, "image.generate", _image_params(w, init_output_id=w.image.pk), "init_output_id"
        ),
        "api:jobs",
        launches=True,
    ),
    Door(
        "API submit: ControlNet (control_output_id)",
        lambda c, w: _api_submit(
            c,
            w,
            "image.generate",
            _image_params(
                w,
                controlnet=True,
                controlnet_model_id=w.controlnet.pk,
                control_output_id=w.image.pk,
            ),
            "control_output_id",
        ),
        "api:jobs",
        launches=True,
    ),
]


def _api_ids(client: Client, name: str, *args, key: str = "data") -> list[int]:
    """The ids a native API list (or a board's items) shows this client."""
    return [row.get("output", row["id"]) for row in json.loads(_api_json(client, name, *args))[key]]


def _recorded(w: World) -> Output:
    """The image, with a (pending) provenance record."""
    ProvenanceRecord.objects.get_or_create(
        output=w.image,
        defaults={"project": w.project, "sha256": w.image.sha256, "leaf": "0x" + "00" * 32},
    )
    return w.image


# The native API (apps/api/native/): its output routes obey the same rule.
DOORS += [
    Door(
        "API outputs list",
        lambda c, w: w.image.pk in _api_ids(c, "api:outputs", w.project.pk),
        "api:outputs",
    ),
    Door(
        "API output: text",
        lambda c, w: _found(_get(c, "api:output", w.project.pk, w.text.pk)),
        "api:output",
    ),
    Door(
        "API output: image file",
        lambda c, w: _found(_get(c, "api:output_file", w.project.pk, w.image.pk)),
        "api:output_file",
    ),
    Door(
        "API output: thumbnail",
        lambda c, w: _found(
            _get(c, "api:output_file", w.project.pk, w.image.pk, query={"which": "thumb"})
        ),
        "api:output_file",
    ),
    Door(
        "API board items",
        lambda c, w: (
            w.image.pk in _api_ids(c, "api:collection", w.project.pk, w.board.pk, key="items")
        ),
        "api:collection",
    ),
    Door(
        "API put on a board",
        lambda c, w: _found(
            c.put(reverse("api:collection_item", args=[w.project.pk, w.board.pk, w.image.pk]))
        ),
        "api:collection_item",
        launches=True,
    ),
    Door(
        "API provenance record of an output",
        lambda c, w: _found(_get(c, "api:output_provenance", w.project.pk, _recorded(w).pk)),
        "api:output_provenance",
    ),
    Door(
        "API provenance records list",
        lambda c, w: _recorded(w).pk in _api_ids(c, "api:provenance_records", w.project.pk),
        "api:provenance_records",
    ),
    Door(
        "API provenance record by hash",
        lambda c, w: _found(_get(c, "api:provenance_record", w.project.pk, _recorded(w).sha256)),
        "api:provenance_record",
    ),
]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _try_door(door: Door, world: World, moderation: str) -> None:
    # The author goes last: some doors change what they open (delete).
    privileged = world.admin if door.launches else world.reviewer
    assert door.reach(_client(world.other), world) is (moderation == "approved"), "member B"
    assert door.reach(_client(privileged), world) is True, "reviewer/admin"
    assert door.reach(_client(world.author), world) is True, "author"


def _params(doors: list[Door]):
    return [pytest.param(d, id=d.name) for d in doors]


@pytest.mark.parametrize("moderation", STATES)
@pytest.mark.parametrize("door", _params([d for d in DOORS if not d.socket]))
def test_each_door_shows_an_output_only_to_those_the_rule_allows(db, make_world, door, moderation):
    _try_door(door, make_world(moderation), moderation)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("moderation", STATES)
@pytest.mark.parametrize("door", _params([d for d in DOORS if d.socket]))
def test_each_socket_door_shows_an_output_only_to_those_the_rule_allows(
    make_world, door, moderation
):
    _try_door(door, make_world(moderation), moderation)


def test_every_output_route_is_a_door():
    routes = {**http_routes(), **ws_routes()}
    naming = {key for key, route in routes.items() if "output_id>" in route}
    listed = {door.route for door in DOORS}
    assert naming, "the enumeration found no route naming an output"
    assert not naming - listed, f"routes naming an output with no door here: {naming - listed}"
    assert not listed - set(routes), (
        f"doors through routes that do not exist: {listed - set(routes)}"
    )


def test_a_rejected_results_entry_keeps_only_its_id(db, make_world, client):
    w = make_world("rejected")
    client.force_login(w.other)

    result = json.loads(_api_json(client, "api:job", w.project.pk, w.text_job.pk))["result"]

    assert result == {"runs": [{"output_id": w.text.pk, "withheld": True}]}


# --------------------------------------------------------------------------- live streams


async def _drain(ws: WebsocketCommunicator, quiet: float = 0.4) -> list[dict]:
    out = []
    while not await ws.receive_nothing(timeout=quiet):
        message = await ws.receive_output()
        if message["type"] == "websocket.send":
            frame = json.loads(message["text"])  # one message, or an array of events in order
            out += frame if isinstance(frame, list) else [frame]
    return out


def _headers(user) -> list[tuple[bytes, bytes]]:
    client = _client(user)
    return [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]


def _texts(messages: list[dict]) -> list[dict]:
    return [m["data"] for m in messages if m.get("kind") == "text"]


@pytest.mark.django_db(transaction=True)
def test_a_running_jobs_text_streams_to_its_author_and_reviewers_but_not_to_other_members(
    project, people, make_user, tmp_path, settings
):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    other = make_user("member-b")
    Membership.objects.create(project=project, user=other, role="member")
    llama = BaseModel.objects.get(reference="tiny-llama")
    job = make_job(project, people["member"], "textgen", base_model_id=llama.pk, prompt="hi")
    attempt = job_claim(job_id=job.pk, worker_id="tests").attempt
    job_append_events(
        job_id=job.pk, events=[("text", {"index": 0, "delta": "Once"})], attempt=attempt
    )
    viewers = {"author": people["member"], "reviewer": people["reviewer"], "other": other}
    headers = {name: _headers(user) for name, user in viewers.items()}

    async def scenario() -> dict[str, list[dict]]:
        sockets = {}
        for name in viewers:
            sockets[name] = WebsocketCommunicator(
                application, f"/ws/jobs/{job.pk}/", headers=headers[name]
            )
            assert (await sockets[name].connect(timeout=5))[0]
        seen = {name: await _drain(ws) for name, ws in sockets.items()}  # the replay
        await database_sync_to_async(job_append_events)(
            job_id=job.pk, events=[("text", {"index": 0, "delta": " upon"})], attempt=attempt
        )
        for name, ws in sockets.items():
            seen[name] += await _drain(ws)  # the live doorbell
            await ws.disconnect()
        return seen

    seen = async_to_sync(scenario)()

    for name in ("author", "reviewer"):
        assert "".join(d["delta"] for d in _texts(seen[name])) == "Once upon", name
    assert _texts(seen["other"]) == [
        {"index": 0, "withheld": True},
        {"index": 0, "withheld": True},
    ]


# --------------------------------------------------------------------------- runs and submits


@pytest.mark.django_db(transaction=True)
def test_an_image_flagged_after_its_upscale_was_submitted_is_refused_when_the_job_runs(
    make_world,
):
    from workers.tasks.runtime import execute_job

    w = make_world("approved")
    job = job_create(
        project=w.project,
        kind="image.upscale",
        params={"output_id": w.image.pk, "scale": 2},
        created_by=w.other,
    )
    Output.objects.filter(pk=w.image.pk).update(moderation="flagged")

    assert execute_job(job.pk, worker_id="tests") == "failed"
    job.refresh_from_db()
    assert "no longer available" in job.error
    assert not Output.objects.filter(job=job).exists()


def test_image_and_text_kinds_name_their_prompt_fields():
    assert registry.get("image.generate").prompt_fields == ("prompt", "negative_prompt")
    assert {"prompt", "system"} <= set(registry.get("textgen").prompt_fields)


@pytest.fixture
def refusing_check():
    """A submit check, registered for one test, that refuses prompts with a blocked word."""
    calls = []

    def check(*, project, user, kind, params) -> dict[str, str]:
        prompts = registry.prompt_texts(kind, params)
        calls.append({"project": project, "user": user, "kind": kind.name, "prompts": prompts})
        return {f: "blocked word" for f, text in prompts.items() if "xylophage" in text}

    registry.register_submit_check(check)
    yield calls
    registry.unregister_submit_check(check)


def test_a_blocked_prompt_creates_no_job_and_sends_nothing_to_a_worker(
    db, project, people, tmp_path, settings, refusing_check, django_capture_on_commit_callbacks
):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    llama = BaseModel.objects.get(reference="tiny-llama")
    params = {"base_model_id": llama.pk, "prompt": "hi", "system": "you are a xylophage"}

    with django_capture_on_commit_callbacks() as sent, pytest.raises(JobParamsError) as info:
        job_create(project=project, kind="textgen", params=params, created_by=people["member"])

    assert info.value.errors == {"system": "blocked word"}
    assert not Job.objects.exists()
    assert sent == []  # no dispatch (the Celery message is sent on commit) and no doorbell
    assert refusing_check[-1]["user"] == people["member"]
    assert refusing_check[-1]["prompts"]["prompt"] == "hi"


def test_the_api_answers_a_blocked_prompt_with_its_field(
    db, client, project, people, tmp_path, settings, refusing_check
):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    sd = BaseModel.objects.get(reference="tiny-sd")
    client.force_login(people["member"])
    body = {"kind": "image.generate", "params": {"model_id": sd.pk, "prompt": "a xylophage"}}

    response = client.post(
        reverse("api:jobs", args=[project.pk]), json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"prompt": "blocked word"}
    assert not Job.objects.exists()


def test_a_prompt_that_passes_every_check_is_queued(db, project, people, refusing_check):
    job = make_job(project, people["member"])

    assert Job.objects.filter(pk=job.pk, state="queued").exists()
    assert refusing_check[-1]["kind"] == "test.steps" and refusing_check[-1]["prompts"] == {}
