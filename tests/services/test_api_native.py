"""The native REST API's resources (/api/v1/): members, datasets and versions, models, adapters,
outputs, galleries, review decisions and provenance records, called as a script does (a personal
Bearer token) and as the pages do (the session). The API asks the same selectors and services as
the pages: a stranger gets 404, a role without the capability 403, a hidden output stays hidden."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from PIL import Image

from apps.api.tokens import token_create, token_revoke
from apps.audit.models import AuditEvent
from apps.datasets.services import dataset_import
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from apps.moderation.models import Flag
from apps.outputs.models import Collection, Moderation, Output
from apps.projects.models import Membership, Project
from apps.provenance.models import AnchorBatch, BatchState, ProvenanceRecord, RecordState
from apps.review.models import ReviewDecision
from tests import factories
from workers.chain.merkle import build_tree, leaf_for_sha256

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def tokens(project, people) -> dict[str, str]:
    """A token per persona: the project's members in the project, the outsider in their own."""
    elsewhere = Project.objects.create(name="Elsewhere")
    Membership.objects.create(project=elsewhere, user=people["outsider"], role="admin")
    raw = {}
    for persona, user in people.items():
        home = elsewhere if persona == "outsider" else project
        _, raw[persona] = token_create(user=user, name=f"{persona} script", project_id=home.pk)
    return raw


def call(client, method: str, name: str, *args, token: str | None = None, body=None, **query):
    """An API request: with a Bearer token, or with the client's session when `token` is None."""
    url = reverse(name, args=args)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "get":
        return client.get(url, query, headers=headers)
    return getattr(client, method)(
        url,
        data=json.dumps(body) if body is not None else "",
        content_type="application/json",
        headers=headers,
    )


def error_of(response) -> dict:
    """The one error shape: {"error": {"code", "message", "param", "type"}}."""
    error = response.json()["error"]
    assert {"code", "message", "param", "type"} <= set(error)
    assert error["message"]
    return error


def login(client, persona: str):
    assert client.login(username=persona, password=f"pw-{persona}")
    return client


def png_bytes(color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def image_output(project, author, *, moderation="clean", color=(200, 30, 30)) -> Output:
    """An image output with its PNG under media, as the image runner leaves one."""
    data = png_bytes(color)
    output = factories.make_output(
        project, author, kind="image", prompt="a red square", moderation=moderation
    )
    rel = f"outputs/{project.pk}/{output.pk}.png"
    path = Path(django_settings.MEDIA_ROOT) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    Output.objects.filter(pk=output.pk).update(file_path=rel, width=8, height=8)
    output.refresh_from_db()
    return output


def flagged(project, author, text="forbidden words") -> Output:
    output = factories.make_output(
        project, author, text=text, prompt="say it", moderation="flagged"
    )
    Flag.objects.create(
        project=project,
        output=output,
        door="output",
        severity="flag",
        categories=["custom"],
        hits=[{"field": "text", "start": 0, "end": 9, "category": "custom", "rule": "forbidden"}],
        ruleset_version=1,
    )
    return output


@pytest.fixture
def version(project, people, tmp_path):
    csv_path = tmp_path / "qa.csv"
    csv_path.write_text("question,answer\nWhat is BP?,Blood pressure.\nHi,Hello\n")
    version, _ = dataset_import(
        project=project,
        actor=people["member"],
        upload_path=csv_path,
        filename="qa.csv",
        name="QA",
        license="CC0-1.0",
        source="tests",
    )
    return version


@pytest.fixture
def adapter(project, people) -> Adapter:
    ensure_builtin_rows()
    folder = Path(django_settings.MEDIA_ROOT) / "adapters" / str(project.pk) / "7"
    (folder / "adapter").mkdir(parents=True, exist_ok=True)
    (folder / "adapter.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    return Adapter.objects.create(
        project=project,
        name="qa-lora",
        base_model=BaseModel.objects.get(reference="tiny-llama"),
        storage_path=f"adapters/{project.pk}/7/adapter",
        metrics={"eval_loss_before": 2.5, "eval_loss_after": 1.5},
        created_by=people["member"],
    )


# --------------------------------------------------------------------------- tokens


def test_a_token_of_a_non_member_gets_404_on_every_kind_of_project_object(
    client, project, people, tokens, version, adapter
):
    output = image_output(project, people["member"])
    board = Collection.objects.create(project=project, name="Picks")
    names = [
        ("api:members", [project.pk]),
        ("api:datasets", [project.pk]),
        ("api:dataset", [project.pk, version.dataset_id]),
        ("api:dataset_versions", [project.pk, version.dataset_id]),
        ("api:models", [project.pk]),
        ("api:adapters", [project.pk]),
        ("api:adapter", [project.pk, adapter.pk]),
        ("api:adapter_download", [project.pk, adapter.pk]),
        ("api:outputs", [project.pk]),
        ("api:output", [project.pk, output.pk]),
        ("api:output_file", [project.pk, output.pk]),
        ("api:collections", [project.pk]),
        ("api:collection", [project.pk, board.pk]),
        ("api:review_queue", [project.pk]),
        ("api:review_decisions", [project.pk]),
        ("api:provenance_records", [project.pk]),
        ("api:output_provenance", [project.pk, output.pk]),
    ]
    for name, args in names:
        response = call(client, "get", name, *args, token=tokens["outsider"])

        assert response.status_code == 404, name
        assert error_of(response)["code"] == "not_found"


def test_a_revoked_token_gets_401_even_with_a_session(client, project, people, tokens):
    row, raw = token_create(user=people["admin"], name="old", project_id=project.pk)
    token_revoke(user=people["admin"], token_id=row.pk)
    login(client, "admin")

    response = call(client, "get", "api:members", project.pk, token=raw)

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


def test_no_token_and_no_session_is_a_401_that_says_how_to_authenticate(client, project):
    response = call(client, "get", "api:outputs", project.pk)

    assert response.status_code == 401
    assert "Bearer" in error_of(response)["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


# --------------------------------------------------------------------------- members


def test_a_member_lists_the_members_with_a_token_and_with_the_session(
    client, project, people, tokens
):
    by_token = call(client, "get", "api:members", project.pk, token=tokens["viewer"])
    by_session = call(login(client, "viewer"), "get", "api:members", project.pk)

    assert by_token.status_code == by_session.status_code == 200
    assert by_token.json() == by_session.json()
    roles = {m["username"]: m["role"] for m in by_token.json()["data"]}
    assert roles == {
        "admin": "admin",
        "member": "member",
        "reviewer": "reviewer",
        "viewer": "viewer",
    }


def test_an_admin_adds_a_user_by_username_with_a_role(client, project, people, tokens, make_user):
    make_user("newcomer")

    response = call(
        client,
        "post",
        "api:members",
        project.pk,
        token=tokens["admin"],
        body={"username": "newcomer", "role": "reviewer"},
    )

    assert response.status_code == 202
    assert project.memberships.get(user__username="newcomer").role == "reviewer"
    assert AuditEvent.objects.filter(action="membership.add").exists()


def test_an_unknown_username_is_answered_like_an_add_as_on_the_members_page(
    client, project, people, tokens
):
    before = Membership.objects.count()

    response = call(
        client,
        "post",
        "api:members",
        project.pk,
        token=tokens["admin"],
        body={"username": "nobody-here", "role": "viewer"},
    )

    assert response.status_code == 202
    assert response.json()["message"].startswith("If a user named nobody-here exists")
    assert Membership.objects.count() == before


def test_an_admin_changes_a_role_then_removes_the_member(client, project, people, tokens):
    viewer = Membership.objects.get(project=project, user=people["viewer"])

    changed = call(
        client,
        "patch",
        "api:member",
        project.pk,
        viewer.pk,
        token=tokens["admin"],
        body={"role": "member"},
    )
    removed = call(client, "delete", "api:member", project.pk, viewer.pk, token=tokens["admin"])

    assert changed.status_code == 200
    assert changed.json()["role"] == "member"
    assert removed.status_code == 204
    assert not Membership.objects.filter(pk=viewer.pk).exists()


def test_the_last_admin_can_be_neither_demoted_nor_removed(client, project, people, tokens):
    admin = Membership.objects.get(project=project, user=people["admin"])

    demoted = call(
        client,
        "patch",
        "api:member",
        project.pk,
        admin.pk,
        token=tokens["admin"],
        body={"role": "viewer"},
    )
    removed = call(client, "delete", "api:member", project.pk, admin.pk, token=tokens["admin"])

    for response in (demoted, removed):
        assert response.status_code == 400
        assert "at least one admin" in error_of(response)["message"]
    admin.refresh_from_db()
    assert admin.role == "admin"


def test_a_member_cannot_manage_members(client, project, people, tokens):
    viewer = Membership.objects.get(project=project, user=people["viewer"])

    added = call(
        client,
        "post",
        "api:members",
        project.pk,
        token=tokens["member"],
        body={"username": "outsider", "role": "admin"},
    )
    changed = call(
        client,
        "patch",
        "api:member",
        project.pk,
        viewer.pk,
        token=tokens["member"],
        body={"role": "admin"},
    )
    removed = call(client, "delete", "api:member", project.pk, viewer.pk, token=tokens["member"])

    for response in (added, changed, removed):
        assert response.status_code == 403
        assert error_of(response)["code"] == "forbidden"
    assert not project.memberships.filter(user=people["outsider"]).exists()
    viewer.refresh_from_db()
    assert viewer.role == "viewer"


def test_an_unknown_role_is_a_400_that_names_the_role_field(client, project, people, tokens):
    viewer = Membership.objects.get(project=project, user=people["viewer"])

    response = call(
        client,
        "patch",
        "api:member",
        project.pk,
        viewer.pk,
        token=tokens["admin"],
        body={"role": "owner"},
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "role"
    assert error["code"] == "invalid_request"
    viewer.refresh_from_db()
    assert viewer.role == "viewer"


def test_a_membership_of_another_project_is_not_found_through_this_one(
    client, project, people, tokens
):
    other = Project.objects.get(name="Elsewhere")
    stranger = Membership.objects.get(project=other, user=people["outsider"])

    response = call(
        client,
        "patch",
        "api:member",
        project.pk,
        stranger.pk,
        token=tokens["admin"],
        body={"role": "viewer"},
    )

    assert response.status_code == 404
    stranger.refresh_from_db()
    assert stranger.role == "admin"


# --------------------------------------------------------------------------- paging and errors


def test_paging_walks_back_with_before_and_forward_with_after(client, project, people, tokens):
    made = [factories.make_output(project, people["member"], text=f"t{i}") for i in range(5)]
    ids = [o.pk for o in made]

    first = call(client, "get", "api:outputs", project.pk, token=tokens["member"], limit=2).json()
    second = call(
        client,
        "get",
        "api:outputs",
        project.pk,
        token=tokens["member"],
        limit=2,
        before=first["data"][-1]["id"],
    ).json()
    last = call(
        client,
        "get",
        "api:outputs",
        project.pk,
        token=tokens["member"],
        limit=2,
        before=second["data"][-1]["id"],
    ).json()
    newer = call(
        client, "get", "api:outputs", project.pk, token=tokens["member"], limit=10, after=ids[2]
    ).json()

    assert [o["id"] for o in first["data"]] == [ids[4], ids[3]] and first["has_more"]
    assert [o["id"] for o in second["data"]] == [ids[2], ids[1]] and second["has_more"]
    assert [o["id"] for o in last["data"]] == [ids[0]] and not last["has_more"]
    assert [o["id"] for o in newer["data"]] == [ids[3], ids[4]] and not newer["has_more"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "lots"}, "limit"),
        ({"limit": "500"}, "limit"),
        ({"kind": "video"}, "kind"),
        ({"moderation": "maybe"}, "moderation"),
        ({"before": "3", "after": "1"}, "after"),
    ],
)
def test_a_bad_query_field_is_a_400_that_names_it(client, project, people, tokens, query, param):
    response = call(client, "get", "api:outputs", project.pk, token=tokens["member"], **query)

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_every_list_is_bounded(client, project, people, tokens):
    for i in range(3):
        factories.make_output(project, people["member"], text=f"t{i}")

    response = call(client, "get", "api:outputs", project.pk, token=tokens["member"])
    too_many = call(client, "get", "api:outputs", project.pk, token=tokens["member"], limit=201)

    assert response.json()["has_more"] is False and len(response.json()["data"]) == 3
    assert too_many.status_code == 400


# --------------------------------------------------------------------------- datasets, models, adapters


def test_a_dataset_and_its_versions(client, project, people, tokens, version):
    one = call(client, "get", "api:dataset", project.pk, version.dataset_id, token=tokens["viewer"])
    versions = call(
        client,
        "get",
        "api:dataset_versions",
        project.pk,
        version.dataset_id,
        token=tokens["viewer"],
    )
    listed = call(login(client, "viewer"), "get", "api:datasets", project.pk)

    assert one.status_code == 200
    assert one.json()["name"] == "QA"
    assert one.json()["schema"] == "qa"
    assert one.json()["latest_version"]["sha256"] == version.sha256
    assert [v["number"] for v in versions.json()["data"]] == [1]
    assert versions.json()["data"][0]["rows"] == 2
    assert [d["id"] for d in listed.json()["data"]] == [version.dataset_id]
    assert listed.json()["data"][0]["latest_version"]["id"] == version.pk


def test_a_dataset_of_another_project_is_not_found(client, project, people, tokens, version):
    other = Project.objects.get(name="Elsewhere")

    response = call(
        client, "get", "api:dataset", other.pk, version.dataset_id, token=tokens["admin"]
    )
    crossed = call(
        client,
        "get",
        "api:dataset_versions",
        project.pk,
        version.dataset_id + 99,
        token=tokens["admin"],
    )

    assert response.status_code == 404
    assert crossed.status_code == 404


def test_members_see_the_enabled_base_models(client, project, people, tokens):
    ensure_builtin_rows()
    hidden = BaseModel.objects.create(name="retired", source="folder", enabled=False)

    listed = call(client, "get", "api:models", project.pk, token=tokens["viewer"], kind="text")
    names = [m["name"] for m in listed.json()["data"]]
    tiny = BaseModel.objects.get(reference="tiny-llama")
    one = call(client, "get", "api:model", project.pk, tiny.pk, token=tokens["viewer"])
    gone = call(client, "get", "api:model", project.pk, hidden.pk, token=tokens["viewer"])

    assert listed.status_code == 200
    assert tiny.name in names and "retired" not in names
    assert {m["kind"] for m in listed.json()["data"]} == {"text"}
    assert one.json()["reference"] == "tiny-llama"
    assert "path" not in one.json()  # a server path is nobody's business
    assert gone.status_code == 404


def test_adapters_list_detail_and_zip(client, project, people, tokens, adapter):
    listed = call(client, "get", "api:adapters", project.pk, token=tokens["viewer"])
    one = call(client, "get", "api:adapter", project.pk, adapter.pk, token=tokens["viewer"])
    download = client.get(
        one.json()["download_url"], headers={"Authorization": f"Bearer {tokens['viewer']}"}
    )
    merged = call(
        client,
        "get",
        "api:adapter_download",
        project.pk,
        adapter.pk,
        token=tokens["viewer"],
        what="merged",
    )

    assert [a["name"] for a in listed.json()["data"]] == ["qa-lora"]
    assert one.json()["base_model"]["name"] == adapter.base_model.name
    assert one.json()["metrics"]["eval_loss_after"] == 1.5
    assert one.json()["merged_download_url"] is None
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert b"".join(download.streaming_content).startswith(b"PK")
    assert merged.status_code == 404
    assert error_of(merged)["param"] == "what"


# --------------------------------------------------------------------------- outputs


def test_a_member_does_not_see_another_members_flagged_output(client, project, people, tokens):
    theirs = flagged(project, people["admin"])
    clean = factories.make_output(project, people["admin"], text="fine")

    member_list = call(client, "get", "api:outputs", project.pk, token=tokens["member"])
    member_one = call(client, "get", "api:output", project.pk, theirs.pk, token=tokens["member"])
    reviewer_list = call(client, "get", "api:outputs", project.pk, token=tokens["reviewer"])
    reviewer_one = call(
        client, "get", "api:output", project.pk, theirs.pk, token=tokens["reviewer"]
    )

    assert [o["id"] for o in member_list.json()["data"]] == [clean.pk]
    assert member_one.status_code == 404
    assert {o["id"] for o in reviewer_list.json()["data"]} == {clean.pk, theirs.pk}
    assert reviewer_one.json()["moderation"] == "flagged"
    assert reviewer_one.json()["flag_categories"] == ["custom"]


def test_an_author_sees_their_own_flagged_output(client, project, people, tokens):
    mine = flagged(project, people["member"])

    response = call(client, "get", "api:output", project.pk, mine.pk, token=tokens["member"])

    assert response.status_code == 200
    assert response.json()["text"] == "forbidden words"
    assert response.json()["decision"] is None


def test_outputs_filter_by_kind_job_and_moderation(client, project, people, tokens):
    job = factories.make_job(project, people["member"])
    text = factories.make_output(project, people["member"], job=job, text="from the job")
    image = image_output(project, people["member"])
    rejected = factories.make_output(project, people["member"], text="no", moderation="rejected")

    def ids(**query):
        response = call(client, "get", "api:outputs", project.pk, token=tokens["member"], **query)
        return [o["id"] for o in response.json()["data"]]

    assert ids(kind="image") == [image.pk]
    assert ids(job=job.pk) == [text.pk]
    assert ids(moderation="rejected") == [rejected.pk]
    assert ids(kind="text", moderation="clean") == [text.pk]


def test_an_image_output_downloads_with_the_token(client, project, people, tokens):
    image = image_output(project, people["member"])

    one = call(client, "get", "api:output", project.pk, image.pk, token=tokens["viewer"]).json()
    png = client.get(one["image_url"], headers={"Authorization": f"Bearer {tokens['viewer']}"})
    thumb = call(
        client,
        "get",
        "api:output_file",
        project.pk,
        image.pk,
        token=tokens["viewer"],
        which="thumb",
    )

    assert png.status_code == 200
    assert png["Content-Type"] == "image/png"
    assert b"".join(png.streaming_content) == png_bytes()
    assert thumb.status_code == 404  # no thumbnail was made
    assert error_of(thumb)["param"] == "which"


def test_a_hidden_image_is_not_served_to_another_member(client, project, people, tokens):
    image = image_output(project, people["admin"], moderation="flagged")

    response = call(client, "get", "api:output_file", project.pk, image.pk, token=tokens["member"])

    assert response.status_code == 404


# --------------------------------------------------------------------------- galleries


def test_a_member_makes_a_board_and_puts_an_output_on_it(client, project, people, tokens):
    output = factories.make_output(project, people["admin"], text="keep")

    made = call(
        client,
        "post",
        "api:collections",
        project.pk,
        token=tokens["member"],
        body={"name": "Picks"},
    )
    board = made.json()["id"]
    added = call(
        client, "put", "api:collection_item", project.pk, board, output.pk, token=tokens["member"]
    )
    again = call(
        client, "put", "api:collection_item", project.pk, board, output.pk, token=tokens["member"]
    )
    shown = call(client, "get", "api:collection", project.pk, board, token=tokens["viewer"])
    listed = call(client, "get", "api:collections", project.pk, token=tokens["viewer"])

    assert made.status_code == 201
    assert (
        added.json()
        == again.json()
        == {"collection": board, "output": output.pk, "in_collection": True}
    )
    assert [o["id"] for o in shown.json()["items"]] == [output.pk]
    assert [c["name"] for c in listed.json()["data"]] == ["Picks"]
    assert list(Collection.objects.get(pk=board).outputs.all()) == [output]


def test_removing_an_item_takes_it_off_the_board_and_repeats_safely(
    client, project, people, tokens
):
    output = factories.make_output(project, people["admin"], text="keep")
    board = Collection.objects.create(project=project, name="Picks")
    board.outputs.add(output)

    first = call(
        client,
        "delete",
        "api:collection_item",
        project.pk,
        board.pk,
        output.pk,
        token=tokens["admin"],
    )
    second = call(
        client,
        "delete",
        "api:collection_item",
        project.pk,
        board.pk,
        output.pk,
        token=tokens["admin"],
    )

    assert first.json()["in_collection"] is False
    assert second.json()["in_collection"] is False
    assert not board.outputs.exists()


def test_a_viewer_cannot_change_boards(client, project, people, tokens):
    output = factories.make_output(project, people["admin"], text="keep")
    board = Collection.objects.create(project=project, name="Picks")

    made = call(
        client, "post", "api:collections", project.pk, token=tokens["viewer"], body={"name": "Mine"}
    )
    added = call(
        client,
        "put",
        "api:collection_item",
        project.pk,
        board.pk,
        output.pk,
        token=tokens["viewer"],
    )

    assert made.status_code == added.status_code == 403
    assert not board.outputs.exists()
    assert not Collection.objects.filter(name="Mine").exists()


def test_a_board_hides_the_outputs_a_member_may_not_see(client, project, people, tokens):
    hidden = flagged(project, people["admin"])
    shown = factories.make_output(project, people["admin"], text="fine")
    board = Collection.objects.create(project=project, name="Picks")
    board.outputs.add(hidden, shown)

    as_member = call(client, "get", "api:collection", project.pk, board.pk, token=tokens["member"])
    as_reviewer = call(
        client, "get", "api:collection", project.pk, board.pk, token=tokens["reviewer"]
    )

    assert [o["id"] for o in as_member.json()["items"]] == [shown.pk]
    assert {o["id"] for o in as_reviewer.json()["items"]} == {shown.pk, hidden.pk}


def test_a_duplicate_board_name_is_a_400_naming_the_field(client, project, people, tokens):
    Collection.objects.create(project=project, name="Picks")

    response = call(
        client,
        "post",
        "api:collections",
        project.pk,
        token=tokens["member"],
        body={"name": "Picks"},
    )

    assert response.status_code == 400
    assert error_of(response)["param"] == "name"


# --------------------------------------------------------------------------- review


def test_a_reviewer_sees_the_queue_and_approves_with_a_token(client, project, people, tokens):
    waiting = flagged(project, people["member"])

    queue = call(client, "get", "api:review_queue", project.pk, token=tokens["reviewer"])
    decided = call(
        client,
        "post",
        "api:review_decisions",
        project.pk,
        token=tokens["reviewer"],
        body={"output": waiting.pk, "decision": "approve"},
    )
    after = call(client, "get", "api:review_queue", project.pk, token=tokens["reviewer"])
    past = call(client, "get", "api:review_decisions", project.pk, token=tokens["admin"])

    item = queue.json()["data"][0]
    assert item["output"] == waiting.pk and item["categories"] == ["custom"]
    text = next(f for f in item["fields"] if f["name"] == "text")
    assert text["pieces"][0]["text"] == "forbidden" and text["pieces"][0]["hit"]["rule"]
    assert decided.status_code == 201
    assert decided.json()["decision"] == "approved"
    assert decided.json()["decided_by"] == "reviewer"
    waiting.refresh_from_db()
    assert waiting.moderation == Moderation.APPROVED
    assert after.json() == {"data": [], "has_more": False}
    assert [d["output"] for d in past.json()["data"]] == [waiting.pk]


def test_a_reviewer_rejects_with_a_reason_by_session(client, project, people):
    waiting = flagged(project, people["member"])

    response = call(
        login(client, "reviewer"),
        "post",
        "api:review_decisions",
        project.pk,
        body={"output": waiting.pk, "decision": "reject", "reason": "Not for us"},
    )

    assert response.status_code == 201
    decision = ReviewDecision.objects.get(output=waiting)
    assert (decision.decision, decision.reason) == ("rejected", "Not for us")


def test_a_rejection_without_a_reason_is_a_400_naming_the_reason(client, project, people, tokens):
    waiting = flagged(project, people["member"])

    response = call(
        client,
        "post",
        "api:review_decisions",
        project.pk,
        token=tokens["reviewer"],
        body={"output": waiting.pk, "decision": "reject"},
    )

    assert response.status_code == 400
    assert error_of(response)["param"] == "reason"
    waiting.refresh_from_db()
    assert waiting.moderation == Moderation.FLAGGED


def test_a_viewer_or_member_cannot_decide_and_the_output_stays_flagged(
    client, project, people, tokens
):
    waiting = flagged(project, people["admin"])

    for persona in ("viewer", "member"):
        response = call(
            client,
            "post",
            "api:review_decisions",
            project.pk,
            token=tokens[persona],
            body={"output": waiting.pk, "decision": "approve"},
        )
        assert response.status_code == 403
        assert error_of(response)["type"] == "permission_error"
    waiting.refresh_from_db()
    assert waiting.moderation == Moderation.FLAGGED
    assert not ReviewDecision.objects.exists()


def test_a_decided_output_is_a_409_and_ones_own_output_a_400(client, project, people, tokens):
    done = flagged(project, people["member"])
    own = flagged(project, people["reviewer"])
    body = {"decision": "approve"}
    call(
        client,
        "post",
        "api:review_decisions",
        project.pk,
        token=tokens["reviewer"],
        body={**body, "output": done.pk},
    )

    twice = call(
        client,
        "post",
        "api:review_decisions",
        project.pk,
        token=tokens["admin"],
        body={**body, "output": done.pk},
    )
    mine = call(
        client,
        "post",
        "api:review_decisions",
        project.pk,
        token=tokens["reviewer"],
        body={**body, "output": own.pk},
    )

    assert twice.status_code == 409
    assert error_of(twice)["param"] == "output"
    assert mine.status_code == 400
    assert "another reviewer" in error_of(mine)["message"]
    assert ReviewDecision.objects.count() == 1


def test_the_queue_and_past_decisions_are_for_reviewers_and_admins(client, project, people, tokens):
    for persona in ("viewer", "member"):
        queue = call(client, "get", "api:review_queue", project.pk, token=tokens[persona])
        past = call(client, "get", "api:review_decisions", project.pk, token=tokens[persona])
        assert queue.status_code == past.status_code == 403


# --------------------------------------------------------------------------- provenance


def anchored(project, outputs) -> AnchorBatch:
    """A mined batch over these outputs, as the anchor runner leaves one."""
    leaves = [leaf_for_sha256(o.sha256) for o in outputs]
    tree = build_tree(leaves)
    batch = AnchorBatch.objects.create(
        project=project,
        chain_id=31337,
        contract="0x" + "ab" * 20,
        state=BatchState.MINED,
        root="0x" + tree.root.hex(),
        count=len(leaves),
        tx_hash="0x" + "11" * 32,
        block_number=7,
        confirmations=1,
    )
    for index, (output, leaf) in enumerate(zip(outputs, leaves, strict=True)):
        ProvenanceRecord.objects.create(
            output=output,
            project=project,
            sha256=output.sha256,
            leaf="0x" + leaf.hex(),
            state=RecordState.BATCHED,
            batch=batch,
            leaf_index=index,
            proof=["0x" + p.hex() for p in tree.proof(index)],
        )
    return batch


def test_members_list_records_and_get_one_by_output_or_hash(client, project, people, tokens):
    outputs = [factories.make_output(project, people["member"], text=f"o{i}") for i in range(2)]
    batch = anchored(project, outputs)

    listed = call(client, "get", "api:provenance_records", project.pk, token=tokens["viewer"])
    by_output = call(
        client, "get", "api:output_provenance", project.pk, outputs[0].pk, token=tokens["viewer"]
    )
    by_hash = call(
        client,
        "get",
        "api:provenance_record",
        project.pk,
        outputs[1].sha256.upper(),
        token=tokens["viewer"],
    )
    final_only = call(
        client, "get", "api:provenance_records", project.pk, token=tokens["viewer"], state="final"
    )

    assert {r["output"] for r in listed.json()["data"]} == {o.pk for o in outputs}
    assert listed.json()["data"][0]["batch"]["tx_hash"] == batch.tx_hash
    assert by_output.json()["state"] == "batched"
    assert by_output.json()["proof_document"]["root"] == batch.root
    assert by_hash.json()["output"] == outputs[1].pk
    assert final_only.json()["data"] == []


def test_the_record_of_a_hidden_output_is_not_shown(client, project, people, tokens):
    hidden = flagged(project, people["admin"])
    anchored(project, [hidden])

    listed = call(client, "get", "api:provenance_records", project.pk, token=tokens["member"])
    one = call(
        client, "get", "api:output_provenance", project.pk, hidden.pk, token=tokens["member"]
    )
    by_hash = call(
        client, "get", "api:provenance_record", project.pk, hidden.sha256, token=tokens["member"]
    )

    assert listed.json()["data"] == []
    assert one.status_code == by_hash.status_code == 404


def test_a_malformed_hash_is_a_400_naming_sha256(client, project, people, tokens):
    response = call(
        client, "get", "api:provenance_record", project.pk, "not-a-hash", token=tokens["viewer"]
    )

    assert response.status_code == 400
    assert error_of(response)["param"] == "sha256"


# --------------------------------------------------------------------------- the schema and docs


def test_the_schema_describes_every_new_resource(client, db):
    schema = client.get("/api/v1/schema").json()

    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in (
        "/api/v1/projects/{project_id}/members/",
        "/api/v1/projects/{project_id}/outputs/",
        "/api/v1/projects/{project_id}/collections/{collection_id}/",
        "/api/v1/projects/{project_id}/review/decisions/",
        "/api/v1/projects/{project_id}/provenance/records/",
    ):
        get = paths[path]["get"]
        assert get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert get["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorOut"
        )
    assert "bearer" in json.dumps(schema["components"]["securitySchemes"]).lower()


def test_the_docs_page_loads_its_scripts_from_this_site(client, db):
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    body = response.content.decode()
    assert "<script>" not in body.replace(" ", "")  # no inline script for the CSP to block
    assert "/static/ninja/swagger-ui-init.js" in body
    assert "script-src 'self'" in response["Content-Security-Policy"]
