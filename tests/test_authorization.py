"""The authorization matrix: every URL pattern and websocket route, for every persona.

A route missing from MATRIX fails `test_every_route_is_in_the_matrix`, so a new view cannot ship
without saying who may use it. The expected outcomes follow DESIGN.md ("Domain"): a non-member
gets 404 (the project's existence is not revealed), a member without the role gets 403.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import Http404
from django.urls import URLResolver, get_resolver, reverse

from apps.api.models import ApiToken
from apps.api.tokens import token_create
from apps.datasets.models import DatasetVersion
from apps.datasets.services import dataset_import
from apps.datasets.storage import stage_upload
from apps.jobs.models import Job
from apps.jobs.services import job_create
from apps.jobs.states import JobState
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from apps.moderation.models import RuleSetVersion
from apps.outputs.models import Collection, Output
from apps.projects.models import Membership, Project
from apps.provenance.models import ProvenanceSettings
from apps.webhooks.models import Webhook
from webapp.asgi import application
from webapp.routing import websocket_urlpatterns

PERSONAS = ("anonymous", "outsider", "viewer", "member", "reviewer", "admin")
ROLES = frozenset({"viewer", "member", "reviewer", "admin"})
LAUNCHERS = frozenset({"member", "admin"})
ADMINS = frozenset({"admin"})
ANY_USER = ROLES | {"outsider"}
REVIEWERS = frozenset({"reviewer", "admin"})
NOT_REVIEWER_404 = {p: 404 for p in ("member", "viewer", "outsider")}

# Django protects its own admin and i18n views; they are not ours to enumerate.
SKIPPED_PREFIXES = ("admin/", "i18n/")


@dataclass
class World:
    project: Project
    people: dict
    job: Job  # queued
    failed_job: Job
    viewer_membership: Membership
    version: DatasetVersion
    upload_token: str  # a file staged by the member
    adapter: Adapter
    output: Output
    api_token: ApiToken  # the member's personal API token
    collection: Collection | None = None  # a gallery board (api:collection*)
    base_model: BaseModel | None = None  # the built-in tiny text model (api:model)
    asset: Any = None  # an image LoRA the project trained (craft:image_asset_download)
    craft_job: Job | None = None  # a finished bias probe (craft:text_report)
    style: Any = None  # an image style the member saved (images:style_*)

    def ids(self, job: str = "job") -> dict:
        return {
            "project_id": self.project.pk,
            "job_id": {"failed": self.failed_job, "craft": self.craft_job}.get(job, self.job).pk,
            "membership_id": self.viewer_membership.pk,
            "dataset_id": self.version.dataset_id,
            "number": self.version.number,
            "token": self.upload_token,
            "fmt": "jsonl",
            "adapter_id": self.adapter.pk,
            "what": "adapter",
            "output_id": self.output.pk,
            "which": "image",
            "sha256": self.output.sha256,  # no provenance record: an unknown hash
            "token_id": self.api_token.pk,
            "collection_id": self.collection.pk if self.collection else 0,
            "model_id": self.base_model.pk if self.base_model else 0,
            "asset_id": self.asset.pk if self.asset else 0,
            "form": "distill",
            "user_id": self.people["viewer"].pk,  # accounts:person
            "uidb64": "MQ",  # a set-password link's user (accounts:password_set; bogus token)
            "style_id": self.style.pk if self.style else 0,
            "name": "atelier-1.png",  # a signed link's file name (galleries:signed_file)
            # /v1/ (OpenAI-compatible) path ids: the version as a file, this job, a model.
            "file_id": f"file-v{self.version.pk}",
            "fine_tuning_job_id": f"ftjob-{self.job.pk}",
            "model": "tiny-llama",
        }


@dataclass(frozen=True)
class Check:
    """One request shape against one route, and who may make it.

    scope: "public" (anyone), "user" (any logged-in user), "project" (members with a role in
    `allowed`). `ok` is the status an allowed persona gets; `expect` overrides per persona.
    """

    method: str  # GET, POST, or WS
    scope: str
    allowed: frozenset = frozenset()
    ok: int = 200
    api: bool = False
    data: dict | Callable[[], dict] | None = None  # a callable for bodies read once (files)
    multipart: bool = False  # an API route that takes a file upload
    json_body: bool = False  # a page-side JSON endpoint: JSON in, but Django's HTML 404/403 pages
    job: str = "job"  # which job fills <job_id>: "job" (queued), "failed" or "craft"
    expect: dict = field(default_factory=dict)
    effect: Callable[[World], bool] | None = None  # what an allowed request changed


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def _job_state(world: World) -> str:
    return Job.objects.get(pk=world.job.pk).state


MATRIX: dict[str, list[Check]] = {
    "healthz": [Check("GET", "public")],
    # Platform staff only (tests/services/test_quotas.py); no persona here is staff.
    "quotas:usage": [Check("GET", "user", frozenset(), expect={p: 404 for p in ANY_USER})],
    "quotas:usage_csv": [Check("GET", "user", frozenset(), expect={p: 404 for p in ANY_USER})],
    # The platform's audit log: staff only (tests/test_audit_page.py), like the usage page.
    "audit:platform": [Check("GET", "user", frozenset(), expect={p: 404 for p in ANY_USER})],
    # A project's audit log: its admins and reviewers (read-only, no POST route).
    "audit:project": [Check("GET", "project", frozenset({"reviewer", "admin"}))],
    "accounts:login": [
        Check("GET", "public", expect={p: 302 for p in ANY_USER}),  # redirect_authenticated_user
    ],
    "accounts:logout": [Check("POST", "public", ok=302)],
    # People: platform admins only (is_staff / superuser; tests/services/test_people_pages.py);
    # no persona here is one, so every signed-in user gets 404 and nothing changes.
    "accounts:people": [
        Check("GET", "user", frozenset(), expect={p: 404 for p in ANY_USER}),
        Check(
            "POST",
            "user",
            frozenset(),
            data={"username": "eve", "password": "velvet-harbour-1927"},
            expect={p: 404 for p in ANY_USER},
        ),
    ],
    "accounts:person": [
        Check(
            "POST",
            "user",
            frozenset(),
            data={"action": "deactivate"},
            expect={p: 404 for p in ANY_USER},
        ),
    ],
    # Everyone signed in changes their own password (an empty form: 200 with its errors).
    "accounts:password_change": [
        Check("GET", "user", ANY_USER),
        Check("POST", "user", ANY_USER, data={}),
    ],
    # A set-password link is its own permission; a bogus one says "This link does not work".
    "accounts:password_set": [
        Check("GET", "public"),
        Check("POST", "public", data={"new_password1": "x", "new_password2": "x"}),
    ],
    "projects:list": [
        Check("GET", "user", ANY_USER),
        Check(
            "POST",
            "user",
            ANY_USER,
            ok=302,
            data={"name": "Another project"},
            effect=lambda w: Project.objects.filter(name="Another project").exists(),
        ),
    ],
    "projects:dashboard": [Check("GET", "project", ROLES)],
    "projects:members": [
        Check("GET", "project", ROLES),
        Check(
            "POST",
            "project",
            ADMINS,
            ok=302,
            data={"username": "newcomer", "role": "viewer"},
            effect=lambda w: w.project.memberships.filter(
                user__username="newcomer", role="viewer"
            ).exists(),
        ),
    ],
    "projects:settings": [
        Check("GET", "project", ADMINS),
        Check(
            "POST",
            "project",
            ADMINS,
            ok=302,
            data={"name": "Renamed", "description": "", "max_concurrent_jobs": "3"},
            effect=lambda w: Project.objects.get(pk=w.project.pk).name == "Renamed",
        ),
    ],
    "projects:member_update": [
        Check(
            "POST",
            "project",
            ADMINS,
            ok=302,
            data={"action": "role", "role": "viewer"},
            effect=lambda w: Membership.objects.get(pk=w.viewer_membership.pk).role == "viewer",
        ),
    ],
    "jobs:launch": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            data={"kind": "test.steps", "steps": "1"},
            effect=lambda w: Job.objects.filter(project=w.project, kind="test.steps").count() == 3,
        ),
    ],
    "jobs:detail": [Check("GET", "project", ROLES)],
    "jobs:compare": [Check("GET", "project", ROLES)],
    "jobs:cancel": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            effect=lambda w: _job_state(w) == JobState.CANCELLED,
        ),
    ],
    "jobs:retry": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            job="failed",
            effect=lambda w: Job.objects.filter(retry_of=w.failed_job).exists(),
        ),
    ],
    "api:projects": [Check("GET", "user", ANY_USER, api=True)],
    "api:jobs": [
        Check("GET", "project", ROLES, api=True),
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=201,
            api=True,
            data={"kind": "test.steps", "params": {"steps": 1}},
            effect=lambda w: Job.objects.filter(project=w.project, kind="test.steps").count() == 3,
        ),
    ],
    "api:job": [Check("GET", "project", ROLES, api=True)],
    "api:job_events": [Check("GET", "project", ROLES, api=True)],
    "api:job_metrics": [Check("GET", "project", ROLES, api=True)],
    "api:job_cancel": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            api=True,
            effect=lambda w: _job_state(w) == JobState.CANCELLED,
        ),
    ],
    # The job's owner (the member queued the world's job) or a project admin moves it within
    # the owner's line.
    "api:job_queue_move": [Check("POST", "project", LAUNCHERS, api=True, data={"to": "front"})],
    "api:job_retry": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=201,
            api=True,
            job="failed",
            effect=lambda w: Job.objects.filter(retry_of=w.failed_job).exists(),
        ),
    ],
    "datasets:list": [Check("GET", "project", ROLES)],
    "datasets:upload": [
        Check("GET", "project", LAUNCHERS),
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            data=lambda: {
                "name": "Uploaded",
                "license": "CC0-1.0",
                "source": "tests",
                "file": SimpleUploadedFile("up.csv", b"question,answer\nA?,B.\n"),
            },
        ),
    ],
    # A staged upload belongs to the member who made it: everyone else gets 404.
    "datasets:map": [
        Check("GET", "project", LAUNCHERS, expect={"admin": 404}),
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            expect={"admin": 404},
            data={
                "schema": "qa",
                "role_question": "question",
                "role_answer": "answer",
                "template": "",
                "validation_fraction": "0.1",
                "seed": "1",
            },
            # The import runs as a job: the submit queues it.
            effect=lambda w: Job.objects.filter(
                kind="dataset.import", params__upload=w.upload_token
            ).exists(),
        ),
    ],
    # An import's page and its cancel (the world's job is no import: both send to its job page).
    "datasets:import": [Check("GET", "project", ROLES, ok=302)],
    "datasets:import_cancel": [Check("POST", "project", LAUNCHERS, ok=302)],
    "datasets:map_preview": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            json_body=True,
            expect={"admin": 404},
            data={"schema": "qa", "columns": {"question": "question", "answer": "answer"}},
        ),
    ],
    "datasets:detail": [Check("GET", "project", ROLES, ok=302)],
    "datasets:version": [Check("GET", "project", ROLES)],
    "datasets:download": [Check("GET", "project", ROLES)],
    "datasets:action": [
        # Reviewers may scan (they approve with the report in front of them).
        Check(
            "POST",
            "project",
            LAUNCHERS | {"reviewer"},
            ok=302,
            data={"action": "pii_scan"},
            effect=lambda w: Job.objects.filter(kind="dataset.pii_scan").exists(),
        ),
    ],
    "datasets:decide": [
        Check(
            "POST",
            "project",
            frozenset({"reviewer", "admin"}),
            ok=302,
            data={"decision": "reject", "comment": "not yet"},
            effect=lambda w: DatasetVersion.objects.get(pk=w.version.pk).approval == "rejected",
        ),
    ],
    "api:datasets": [
        Check("GET", "project", ROLES, api=True),
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=202,
            api=True,
            multipart=True,
            data=lambda: {
                "name": "Via API",
                "license": "CC0-1.0",
                "source": "tests",
                "file": SimpleUploadedFile("api.csv", b"question,answer\nA?,B.\n"),
            },
            effect=lambda w: Job.objects.filter(
                kind="dataset.import", params__filename="api.csv"
            ).exists(),
        ),
    ],
    "api:dataset_version": [Check("GET", "project", ROLES, api=True)],
    # The inbox's dataset decision through the API: reviewers and admins (the member imported it).
    "api:dataset_version_decision": [
        Check(
            "POST",
            "project",
            REVIEWERS,
            api=True,
            data={"decision": "reject", "reason": "licence unclear"},
            effect=lambda w: DatasetVersion.objects.get(pk=w.version.pk).approval == "rejected",
        )
    ],
    "models:list": [Check("GET", "project", ROLES)],
    "models:adapter": [Check("GET", "project", ROLES)],
    "models:adapter_download": [Check("GET", "project", ROLES)],
    "models:adapter_merge": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            effect=lambda w: Job.objects.filter(kind="adapter.merge").exists(),
        ),
    ],
    "finetunes:new": [
        Check("GET", "project", LAUNCHERS),
        # The version is not approved: the form comes back with the gate's message, no job.
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=400,
            data=lambda: {
                "base_model_id": str(BaseModel.objects.get(reference="tiny-llama").pk),
                "dataset_version_id": str(DatasetVersion.objects.first().pk),
            },
            effect=lambda w: not Job.objects.filter(kind="finetune.lora").exists(),
        ),
    ],
    "finetunes:estimate": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            json_body=True,
            data=lambda: {"base_model_id": BaseModel.objects.get(reference="tiny-llama").pk},
        ),
    ],
    "playground:index": [Check("GET", "project", ROLES)],
    "galleries:index": [Check("GET", "project", ROLES)],
    "galleries:output": [Check("GET", "project", ROLES)],
    "galleries:file": [Check("GET", "project", ROLES)],
    # A signed link is its own permission (tests/services/test_openai_generation.py makes real
    # ones); anything else in its place (here the upload token) is a 404 for everyone.
    "galleries:signed_file": [Check("GET", "public", ok=404)],
    "galleries:delete": [
        # The member is the author; admins may delete anything; other roles are refused.
        Check(
            "POST",
            "project",
            frozenset({"member", "admin"}),
            ok=302,
            effect=lambda w: not Output.objects.filter(pk=w.output.pk).exists(),
        ),
    ],
    "galleries:upload": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            data=lambda: {"file": SimpleUploadedFile("up.png", _png_bytes())},
            effect=lambda w: Output.objects.filter(params__uploaded="up.png").exists(),
        ),
    ],
    "craft:image_lora": [
        Check("GET", "project", LAUNCHERS),
        # No base model chosen: refused with the form again (400), after the access check.
        Check("POST", "project", LAUNCHERS, ok=400, data={"name": "x"}),
    ],
    "craft:image_embedding": [
        Check("GET", "project", LAUNCHERS),
        Check("POST", "project", LAUNCHERS, ok=400, data={"name": "x"}),
    ],
    "craft:image_asset_download": [Check("GET", "project", ROLES)],
    "craft:index": [Check("GET", "project", ROLES)],
    # No params: refused with the form again (400), after the access check.
    "craft:text_launch": [Check("POST", "project", LAUNCHERS, ok=400, data={})],
    "craft:text_report": [Check("GET", "project", ROLES, job="craft")],
    "galleries:score": [
        # The world's adapter is not a reward model: the submit is refused with a message (302 back
        # to the gallery); what matters here is who reaches the check at all.
        Check("POST", "project", LAUNCHERS, ok=302, data={"adapter_id": "1"}),
    ],
    "galleries:upscale": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            data={"upscaler": "lanczos", "scale": "2"},
            effect=lambda w: Job.objects.filter(
                kind="image.upscale", params__output_id=w.output.pk
            ).exists(),
        ),
    ],
    "galleries:collection_create": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=302,
            data={"name": "Board"},
            effect=lambda w: Collection.objects.filter(name="Board").exists(),
        ),
    ],
    "galleries:collection_toggle": [
        # No board id: an allowed persona reaches the board lookup and gets its 404.
        Check("POST", "project", LAUNCHERS, ok=404),
    ],
    "galleries:png_info": [
        # No file: an allowed persona gets the 400 that says what to send.
        Check("POST", "project", ROLES, ok=400),
    ],
    "images:index": [Check("GET", "project", ROLES)],
    # The job's owner (the member queued the world's job) or a project admin moves it within
    # the owner's line; a reviewer or viewer (no launch_job) gets 403.
    "images:queue_move": [Check("POST", "project", LAUNCHERS, ok=302, data={"to": "front"})],
    # No file: an allowed persona reaches the mask checks and gets their 400.
    "images:mask_upload": [Check("POST", "project", LAUNCHERS, ok=400)],
    "images:styles": [
        Check("GET", "project", ROLES),
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=201,
            data={"name": "noir", "prompt": "{prompt}, black and white"},
            effect=lambda w: w.project.image_styles.filter(name="noir").exists(),
        ),
    ],
    # The member saved the world's style; its author and admins may change or delete it.
    "images:style_update": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            data={"name": "film", "prompt": "{prompt}, 35mm"},
            effect=lambda w: w.project.image_styles.get(pk=w.style.pk).prompt.endswith("35mm"),
        ),
    ],
    "images:style_delete": [
        Check(
            "POST",
            "project",
            LAUNCHERS,
            effect=lambda w: not w.project.image_styles.filter(pk=w.style.pk).exists(),
        ),
    ],
    # The review inbox spans every project where the user reviews; anyone else has no inbox.
    "review:inbox": [Check("GET", "user", REVIEWERS, expect=NOT_REVIEWER_404)],
    "review:loop": [Check("GET", "project", ROLES)],
    "review:decide": [
        # No items chosen: a reviewer is sent back to the inbox with the error.
        Check("POST", "user", REVIEWERS, ok=302, expect=NOT_REVIEWER_404)
    ],
    "review:rules": [
        Check("GET", "project", REVIEWERS),
        Check(
            "POST",
            "project",
            frozenset({"admin"}),
            ok=302,
            data={
                "count": 1,
                "r0-kind": "keyword",
                "r0-pattern": "zorblax",
                "r0-category": "custom",
                "r0-severity": "flag",
                "action": "save",
            },
            effect=lambda w: RuleSetVersion.objects.filter(project=w.project, number=2).exists(),
            expect={"reviewer": 403},
        ),
    ],
    "review:preference_export": [
        # No project chosen: nobody's project, so 404 for everyone.
        Check("POST", "user", frozenset(), expect={p: 404 for p in ANY_USER})
    ],
    # Provenance: the verifier is public (anyone, signed in or not, hashes a file or pastes a
    # hash; tests/services/test_provenance_pages.py checks what it shows); the world's output
    # has no record, so its proof is a 404 for everyone.
    "provenance:verify": [
        Check("GET", "public"),
        Check("POST", "public", ok=302, data={"sha256": "0" * 64}),  # to the hash's page
    ],
    "provenance:verify_hash": [Check("GET", "public")],
    "provenance:proof": [Check("GET", "public", ok=404)],
    "api:verify": [Check("GET", "public", ok=404, api=True)],
    # The API tokens page: each user sees and revokes only their own (the member owns the token).
    "tokens:list": [
        Check("GET", "user", ANY_USER),
        # No project chosen: the form's error, for everyone (making one: test_api_tokens.py).
        Check("POST", "user", ANY_USER, ok=400, data={"name": "t"}),
    ],
    "tokens:revoke": [
        Check(
            "POST",
            "user",
            frozenset({"member"}),
            ok=302,
            expect={p: 404 for p in ANY_USER if p != "member"},
            effect=lambda w: ApiToken.objects.get(pk=w.api_token.pk).revoked_at is not None,
        )
    ],
    # Schemas and docs of both APIs are public: they describe the API, not anyone's data.
    "api:openapi-json": [Check("GET", "public", api=True)],
    "api:openapi-view": [Check("GET", "public")],
    "openai:openapi-json": [Check("GET", "public", api=True)],
    "openai:openapi-view": [Check("GET", "public")],
    # django-ninja's root of each API: a 404 naming the docs' address, for anyone.
    "api:api-root": [Check("GET", "public", ok=404)],
    "openai:api-root": [Check("GET", "public", ok=404)],
    "provenance:project": [
        Check("GET", "project", ROLES),
        Check(
            "POST",
            "project",
            ADMINS,
            ok=302,
            data={"mode": "all"},
            effect=lambda w: ProvenanceSettings.objects.filter(
                project=w.project, mode="all"
            ).exists(),
        ),
    ],
    # A project's webhooks: its admins only. One route; every change is a POST with an `action`
    # (tests/services/test_webhooks.py covers each of them).
    "webhooks:list": [
        Check("GET", "project", ADMINS),
        Check(
            "POST",
            "project",
            ADMINS,
            ok=302,
            data={
                "action": "create",
                "url": "https://hooks.example.com/in",
                "events": "job.failed",
            },
            effect=lambda w: Webhook.objects.filter(project=w.project).exists(),
        ),
    ],
    # ---- The native API's resources (tests/services/test_api_native.py covers each in depth;
    # every api:* check is also made with each persona's Bearer token: test_api_route_*_token).
    "api:members": [
        Check("GET", "project", ROLES, api=True),
        # Answered alike whether the username exists (as on the members page).
        Check(
            "POST",
            "project",
            ADMINS,
            ok=202,
            api=True,
            data={"username": "newcomer", "role": "viewer"},
            effect=lambda w: w.project.memberships.filter(
                user__username="newcomer", role="viewer"
            ).exists(),
        ),
    ],
    "api:member": [
        Check("GET", "project", ROLES, api=True),
        Check(
            "PATCH",
            "project",
            ADMINS,
            api=True,
            data={"role": "reviewer"},
            effect=lambda w: Membership.objects.get(pk=w.viewer_membership.pk).role == "reviewer",
        ),
        Check(
            "DELETE",
            "project",
            ADMINS,
            ok=204,
            api=True,
            effect=lambda w: not Membership.objects.filter(pk=w.viewer_membership.pk).exists(),
        ),
    ],
    "api:dataset": [Check("GET", "project", ROLES, api=True)],
    "api:dataset_versions": [Check("GET", "project", ROLES, api=True)],
    "api:models": [Check("GET", "project", ROLES, api=True)],
    "api:model": [Check("GET", "project", ROLES, api=True)],
    "api:adapters": [Check("GET", "project", ROLES, api=True)],
    "api:adapter": [Check("GET", "project", ROLES, api=True)],
    "api:adapter_download": [Check("GET", "project", ROLES, api=True)],
    "api:outputs": [Check("GET", "project", ROLES, api=True)],
    "api:output": [Check("GET", "project", ROLES, api=True)],
    "api:output_file": [Check("GET", "project", ROLES, api=True)],
    "api:collections": [
        Check("GET", "project", ROLES, api=True),
        Check(
            "POST",
            "project",
            LAUNCHERS,
            ok=201,
            api=True,
            data={"name": "Via API"},
            effect=lambda w: Collection.objects.filter(name="Via API").exists(),
        ),
    ],
    "api:collection": [Check("GET", "project", ROLES, api=True)],
    "api:collection_item": [
        Check(
            "PUT",
            "project",
            LAUNCHERS,
            api=True,
            effect=lambda w: w.collection.outputs.filter(pk=w.output.pk).exists(),
        ),
        Check(
            "DELETE",
            "project",
            LAUNCHERS,
            api=True,
            effect=lambda w: not w.collection.outputs.filter(pk=w.output.pk).exists(),
        ),
    ],
    "api:review_queue": [Check("GET", "project", REVIEWERS, api=True)],
    "api:review_decisions": [
        Check("GET", "project", REVIEWERS, api=True),
        # The world's output is clean: a reviewer reaches the decision and is told it is not
        # awaiting review (409); nobody else gets that far.
        Check(
            "POST",
            "project",
            REVIEWERS,
            ok=409,
            api=True,
            data=lambda: {"output": Output.objects.get(prompt="a cat").pk, "decision": "approve"},
        ),
    ],
    "api:provenance_records": [Check("GET", "project", ROLES, api=True)],
    # The world's output has no provenance record: a member who may ask gets its 404.
    "api:provenance_record": [Check("GET", "project", ROLES, ok=404, api=True)],
    "api:output_provenance": [Check("GET", "project", ROLES, ok=404, api=True)],
    "ws:ws/review/": [Check("WS", "user", REVIEWERS, expect=NOT_REVIEWER_404)],
    "ws:ws/projects/<int:project_id>/": [Check("WS", "project", ROLES)],
    "ws:ws/jobs/<int:job_id>/": [Check("WS", "project", ROLES)],
}


# ---- The OpenAI-compatible API (/v1/): files, fine_tuning, models. A /v1/ route takes a Bearer
# token only and works in the token's project, so these are Bearer checks: made with each
# persona's token (persona_tokens: the outsider's names a project of their own, where lists are
# theirs and this project's ids are unknown) and never with a session (the session pass skips
# them; a session alone gets 401: tests/services/test_openai_finetuning.py).


@dataclass(frozen=True)
class Bearer(Check):
    """A /v1/ check: `prepare(world)` readies what the route needs (a fine-tune job, an approved
    version) and returns the path ids; statuses below 400 are allowed, at or above refused."""

    prepare: Callable[[World], dict] | None = None


def _openai_world(world: World) -> dict:
    """An approved version (a training file) and a queued fine-tune of the project, and the
    /v1/ ids that name them and the world's adapter."""
    from apps.api.openai_compat import naming
    from apps.datasets.models import Approval

    DatasetVersion.objects.filter(pk=world.version.pk).update(approval=Approval.APPROVED)
    tiny = BaseModel.objects.get(reference="tiny-llama")
    job = Job.objects.create(
        project=world.project,
        created_by=world.people["member"],
        kind="finetune.lora",
        queue="gpu",
        params={"base_model_id": tiny.pk, "dataset_version_id": world.version.pk},
    )
    return {
        "file_id": f"file-v{world.version.pk}",
        "fine_tuning_job_id": f"ftjob-{job.pk}",
        "model": naming.adapter_model_id(world.adapter),
    }


def _openai_upload() -> dict:
    row = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    }
    return {
        "file": SimpleUploadedFile("chat.jsonl", json.dumps(row).encode() + b"\n"),
        "purpose": "fine-tune",
    }


def _finetunes(world: World) -> int:
    return Job.objects.filter(project=world.project, kind="finetune.lora").count()


def _newest_finetune_state(world: World) -> str:
    return Job.objects.filter(project=world.project, kind="finetune.lora").latest("pk").state


MATRIX.update(
    {
        "openai:files": [
            Bearer("GET", "project", ROLES, api=True, expect={"outsider": 200}),
            Bearer(
                "POST",
                "project",
                LAUNCHERS,
                api=True,
                multipart=True,
                data=_openai_upload,
                expect={"outsider": 200},  # into the outsider's own project
                effect=lambda w: Job.objects.filter(
                    project=w.project, kind="dataset.import"
                ).exists(),
            ),
        ],
        "openai:file": [
            Bearer("GET", "project", ROLES, api=True, prepare=_openai_world),
            # Versions are immutable: a member who may upload learns why nothing was deleted.
            Bearer("DELETE", "project", LAUNCHERS, ok=409, api=True, prepare=_openai_world),
        ],
        "openai:file_content": [Bearer("GET", "project", ROLES, api=True, prepare=_openai_world)],
        "openai:fine_tuning_jobs": [
            Bearer("GET", "project", ROLES, api=True, expect={"outsider": 200}),
            Bearer(
                "POST",
                "project",
                LAUNCHERS,
                api=True,
                prepare=_openai_world,
                data=lambda: {
                    "model": "tiny-llama",
                    "training_file": "file-v{version}",
                    "suffix": "m",
                },
                # The outsider's token works in their own project, where this file is unknown.
                expect={"outsider": 400},
                effect=lambda w: _finetunes(w) == 2,
            ),
        ],
        "openai:fine_tuning_job": [
            Bearer("GET", "project", ROLES, api=True, prepare=_openai_world)
        ],
        "openai:fine_tuning_job_cancel": [
            Bearer(
                "POST",
                "project",
                LAUNCHERS,
                api=True,
                prepare=_openai_world,
                effect=lambda w: _newest_finetune_state(w) == JobState.CANCELLED,
            )
        ],
        "openai:fine_tuning_job_events": [
            Bearer("GET", "project", ROLES, api=True, prepare=_openai_world)
        ],
        "openai:fine_tuning_job_checkpoints": [
            Bearer("GET", "project", ROLES, api=True, prepare=_openai_world)
        ],
        "openai:models": [Bearer("GET", "project", ROLES, api=True, expect={"outsider": 200})],
        "openai:model": [Bearer("GET", "project", ROLES, api=True, prepare=_openai_world)],
    }
)


# ---- /v1/ generation: chat/completions, completions, images, moderations. Generating needs the
# playground's capability (launch_job); checking a text against the rules only membership. The
# outsider's token works in their own project, where they may. A streamed completion answers at
# once (its job waits, queued: no worker here); an image request waits for its job, so the
# allowed personas send one refused after the permission check (a bad size: 400, no job).


def _textgen_jobs(world: World) -> bool:
    return Job.objects.filter(project=world.project, kind="textgen").exists()


def _image_edit_form() -> dict:
    return {
        "prompt": "a red square",
        "model": "tiny-sd",
        "size": "huge",
        "image": SimpleUploadedFile("red.png", _png_bytes(), "image/png"),
    }


MATRIX.update(
    {
        "openai:chat_completions": [
            Bearer(
                "POST",
                "project",
                LAUNCHERS,
                api=True,
                data={
                    "model": "tiny-llama",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 4,
                    "stream": True,
                },
                expect={"outsider": 200},
                effect=_textgen_jobs,
            )
        ],
        "openai:completions": [
            Bearer(
                "POST",
                "project",
                LAUNCHERS,
                api=True,
                data={"model": "tiny-llama", "prompt": "Once", "max_tokens": 4, "stream": True},
                expect={"outsider": 200},
                effect=_textgen_jobs,
            )
        ],
        "openai:image_generations": [
            Bearer(
                "POST",
                "project",
                LAUNCHERS,
                ok=400,
                api=True,
                data={"prompt": "a red square", "model": "tiny-sd", "size": "huge"},
                expect={"outsider": 400},
            )
        ],
        "openai:image_edits": [
            Bearer(
                "POST",
                "project",
                LAUNCHERS,
                ok=400,
                api=True,
                multipart=True,
                data=_image_edit_form,
                expect={"outsider": 400},
            )
        ],
        "openai:moderations": [
            Bearer(
                "POST",
                "project",
                ROLES,
                api=True,
                data={"input": ["hello", "you are worthless"]},
                expect={"outsider": 200},
            )
        ],
    }
)


# --------------------------------------------------------------------------- enumeration


@functools.cache
def http_routes() -> dict[str, str]:
    """Every URL pattern as {qualified name (or route when unnamed): full route}. Walked once per
    run (the URLconf does not change; a walk takes ~0.1 s, and a thousand cells ask)."""
    found: dict[str, str] = {}

    def walk(patterns, prefix: str, namespace: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if route.startswith(SKIPPED_PREFIXES):
                continue
            if isinstance(p, URLResolver):
                ns = ":".join(filter(None, [namespace, p.namespace]))
                walk(p.url_patterns, route, ns)
            else:
                key = ":".join(filter(None, [namespace, p.name])) if p.name else route
                found[key] = route

    walk(get_resolver().url_patterns, "", "")
    return found


@functools.cache
def ws_routes() -> dict[str, str]:
    found: dict[str, str] = {}

    def walk(routes, prefix: str) -> None:
        for r in routes:
            route = prefix + str(r.pattern)
            inner = getattr(getattr(r, "callback", None), "routes", None)  # a nested URLRouter
            if inner is not None:
                walk(inner, route)
            else:
                found["ws:" + route] = route

    walk(websocket_urlpatterns, "")
    return found


@functools.cache
def all_routes() -> dict[str, str]:
    return {**http_routes(), **ws_routes()}


def fill_route(route: str, ids: dict[str, int]) -> str:
    """A URL pattern with its <params> filled from `ids`."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), route)


def test_every_route_is_in_the_matrix():
    routes = all_routes()
    missing = [key for key, route in routes.items() if key not in MATRIX and route not in MATRIX]
    assert not missing, f"routes with no authorization entry in MATRIX: {missing}"


def test_the_matrix_names_no_route_that_does_not_exist():
    routes = all_routes()
    stale = [key for key in MATRIX if key not in routes and key not in routes.values()]
    assert not stale, f"MATRIX entries for routes that no longer exist: {stale}"


def test_the_enumeration_sees_the_routes_we_know():
    routes = all_routes()
    assert routes["projects:dashboard"] == "projects/<int:project_id>/"
    assert routes["api:job_events"] == "api/v1/projects/<int:project_id>/jobs/<int:job_id>/events/"
    assert "ws:ws/jobs/<int:job_id>/" in routes
    assert not any(r.startswith(SKIPPED_PREFIXES) for r in routes.values())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def world(project, people, make_user, tmp_path) -> World:
    make_user("newcomer")
    job = job_create(
        project=project, kind="test.steps", params={"steps": 1}, created_by=people["member"]
    )
    failed = job_create(
        project=project, kind="test.steps", params={"steps": 2}, created_by=people["member"]
    )
    Job.objects.filter(pk=failed.pk).update(state=JobState.FAILED, error="boom")
    csv_path = tmp_path / "qa.csv"
    csv_path.write_text(
        "question,answer\nWhat is BP?,Blood pressure.\nHi,Hello\n", encoding="utf-8"
    )
    version, _ = dataset_import(
        project=project,
        actor=people["member"],
        upload_path=csv_path,
        filename="qa.csv",
        name="QA",
        license="CC0-1.0",
        source="tests",
    )
    staged = stage_upload(
        uploaded_file=SimpleUploadedFile("more.csv", b"question,answer\nA?,B.\n"),
        user_id=people["member"].pk,
        project_id=project.pk,
    )
    (staged.path / "form.json").write_text(
        json.dumps(
            {
                "name": "More",
                "description": "",
                "license": "CC0-1.0",
                "source": "tests",
                "dataset": None,
            }
        )
    )
    ensure_builtin_rows()
    adapter_dir = Path(django_settings.MEDIA_ROOT) / "adapters" / str(project.pk) / "0"
    (adapter_dir / "adapter").mkdir(parents=True, exist_ok=True)
    (adapter_dir / "adapter.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    adapter = Adapter.objects.create(
        project=project,
        name="qa-lora",
        base_model=BaseModel.objects.get(reference="tiny-llama"),
        storage_path=f"adapters/{project.pk}/0/adapter",
    )
    png = Path(django_settings.MEDIA_ROOT) / "outputs" / str(project.pk) / "a.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(png)
    output = Output.objects.create(
        project=project,
        kind="image",
        prompt="a cat",
        sha256="0" * 64,
        created_by=people["member"],
        file_path=f"outputs/{project.pk}/a.png",
    )
    api_token, _ = token_create(user=people["member"], name="matrix", project_id=project.pk)
    from apps.models.models import ImageAsset

    lora_file = Path(django_settings.MEDIA_ROOT) / "craft" / str(project.pk) / "0" / "m.safetensors"
    lora_file.parent.mkdir(parents=True, exist_ok=True)
    lora_file.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    asset = ImageAsset.objects.create(
        kind="lora",
        name="matrix-lora",
        path=str(lora_file),
        project=project,
        info={"trained": {"project": project.pk}},
    )
    craft_job = Job.objects.create(
        project=project,
        kind="craft.bias_probe",
        queue="gpu",
        params={},
        state=JobState.SUCCEEDED,
        created_by=people["member"],
        result={},
    )
    from apps.images.models import Style

    style = Style.objects.create(
        project=project, name="film", prompt="{prompt}, film grain", created_by=people["member"]
    )
    return World(
        style=style,
        asset=asset,
        craft_job=craft_job,
        api_token=api_token,
        collection=Collection.objects.create(project=project, name="Favourites"),
        base_model=BaseModel.objects.get(reference="tiny-llama"),
        output=output,
        adapter=adapter,
        version=version,
        upload_token=staged.token,
        project=project,
        people=people,
        job=job,
        failed_job=failed,
        viewer_membership=Membership.objects.get(project=project, user=people["viewer"]),
    )


def _login(client, persona: str) -> None:
    """A session for `persona`. force_login: the matrix is about what a signed-in user may do,
    not about passwords (tests/services/test_login_throttle.py signs in for real); a real
    password check costs ~0.3 s (PBKDF2), a thousand times over here."""
    if persona != "anonymous":
        from django.contrib.auth import get_user_model

        client.force_login(get_user_model().objects.get(username=persona))


def _snapshot() -> tuple:
    return (
        sorted(DatasetVersion.objects.values_list("pk", "approval")),
        sorted(Job.objects.values_list("pk", "state")),
        sorted(Membership.objects.values_list("pk", "role")),
        sorted(Project.objects.values_list("pk", flat=True)),
        sorted(Output.objects.values_list("pk", flat=True)),
        sorted(Collection.objects.values_list("pk", flat=True)),
        sorted(ProvenanceSettings.objects.values_list("project_id", "mode")),
    )


def expected(check: Check, persona: str):
    """'ok', 'login' (redirect to the login page), or a status code."""
    if persona in check.expect:
        return check.expect[persona]
    if check.scope == "public":
        return "ok"
    if persona == "anonymous":
        return 401 if check.api else "login"
    if check.scope == "project" and persona == "outsider":
        return 404
    return "ok" if persona in check.allowed else 403


def _cells(kind: str):
    for key, checks in MATRIX.items():
        for i, check in enumerate(checks):
            if (check.method == "WS") == (kind == "ws") and not isinstance(check, Bearer):
                for persona in PERSONAS:
                    yield pytest.param(key, i, persona, id=f"{key}-{check.method}-{persona}")


# --------------------------------------------------------------------------- HTTP cells


@pytest.mark.parametrize(("key", "index", "persona"), list(_cells("http")))
def test_http_route_answers_each_persona_as_the_matrix_says(client, world, key, index, persona):
    check = MATRIX[key][index]
    route = all_routes()[key]
    url = fill_route(route, world.ids(check.job))
    assert url == reverse(
        key, kwargs={k: v for k, v in world.ids(check.job).items() if f"{k}>" in route}
    )
    _login(client, persona)
    before = _snapshot()

    body = check.data() if callable(check.data) else (check.data or {})
    if check.method == "GET":
        response = client.get(url)
    elif (check.api and not check.multipart) or check.json_body:
        response = getattr(client, check.method.lower())(
            url, data=json.dumps(body), content_type="application/json"
        )
    else:
        response = client.post(url, data=body)

    want = expected(check, persona)
    if want == "login":
        assert response.status_code == 302
        assert response.url.startswith(reverse("accounts:login") + "?next=")
    elif want == "ok":
        assert response.status_code == check.ok, response.content[:500]
    else:
        assert response.status_code == want, response.content[:500]
    if check.api and response.status_code >= 400:
        assert "error" in response.json()

    if want == "ok" and check.effect is not None:
        assert check.effect(world)
    elif want != "ok":
        assert _snapshot() == before, "a refused request changed the database"


# --------------------------------------------------------------------------- the API with tokens

# What the anonymous persona sends: a token nobody has (the API answers 401 as without one).
UNKNOWN_TOKEN = "atl_" + "x" * 43


def _send(client, method: str, url: str, **kwargs):
    """A request in any method (the native API has PATCH, PUT and DELETE routes)."""
    return getattr(client, method.lower())(url, **kwargs)


@pytest.fixture
def persona_tokens(world) -> dict[str, str]:
    """A personal API token per persona: the members' in the project, the outsider's in a
    project of their own (a token always names a project its user belongs to)."""
    own = Project.objects.create(name="Outsider's own")
    Membership.objects.create(project=own, user=world.people["outsider"], role="admin")
    raw = {"anonymous": UNKNOWN_TOKEN}
    for persona, user in world.people.items():
        home = own if persona == "outsider" else world.project
        _, raw[persona] = token_create(user=user, name="matrix", project_id=home.pk)
    return raw


def _api_cells():
    for key, checks in MATRIX.items():
        for i, check in enumerate(checks):
            if key.startswith("api:") and check.api:
                for persona in PERSONAS:
                    yield pytest.param(key, i, persona, id=f"{key}-{check.method}-{persona}")


@pytest.mark.parametrize(("key", "index", "persona"), list(_api_cells()))
def test_api_route_answers_each_personas_token_as_the_matrix_says(
    client, world, persona_tokens, key, index, persona
):
    """The same matrix with `Authorization: Bearer` and no session: each native endpoint is
    reachable only with a valid token of a member whose role allows it."""
    check = MATRIX[key][index]
    url = fill_route(all_routes()[key], world.ids(check.job))
    headers = {"Authorization": f"Bearer {persona_tokens[persona]}"}
    before = _snapshot()

    body = check.data() if callable(check.data) else (check.data or {})
    if check.method == "GET":
        response = client.get(url, headers=headers)
    elif check.multipart:
        response = client.post(url, data=body, headers=headers)
    else:
        response = _send(
            client,
            check.method,
            url,
            data=json.dumps(body),
            content_type="application/json",
            headers=headers,
        )

    want = expected(check, persona)
    if want == "login":
        want = 401
    status = check.ok if want == "ok" else want
    assert response.status_code == status, response.content[:500]
    if response.status_code >= 400:
        assert "error" in response.json()
    if persona == "anonymous" and check.scope != "public":
        assert response.json()["error"]["code"] == "invalid_api_key"
    if want == "ok" and check.effect is not None:
        assert check.effect(world)
    elif want != "ok":
        assert _snapshot() == before, "a refused request changed the database"


# --------------------------------------------------------------------------- /v1/ with tokens


def _bearer_cells():
    for key, checks in MATRIX.items():
        for i, check in enumerate(checks):
            if isinstance(check, Bearer):
                for persona in PERSONAS:
                    yield pytest.param(key, i, persona, id=f"{key}-{check.method}-{persona}")


@pytest.mark.parametrize(("key", "index", "persona"), list(_bearer_cells()))
def test_openai_route_answers_each_personas_token_as_the_matrix_says(
    client, world, persona_tokens, key, index, persona
):
    """Each /v1/ route is reachable only with a valid token of a member whose role allows it;
    a refused request changes nothing."""
    check = MATRIX[key][index]
    assert isinstance(check, Bearer)
    ids = {**world.ids(check.job), **(check.prepare(world) if check.prepare else {})}
    url = fill_route(all_routes()[key], ids)
    headers = {"Authorization": f"Bearer {persona_tokens[persona]}"}
    before = _snapshot()

    body = check.data() if callable(check.data) else (check.data or {})
    if check.method == "GET":
        response = client.get(url, headers=headers)
    elif check.multipart:
        response = client.post(url, data=body, headers=headers)
    else:
        text = json.dumps(body).replace("{version}", str(world.version.pk))
        response = _send(
            client, check.method, url, data=text, content_type="application/json", headers=headers
        )

    want = expected(check, persona)
    status = check.ok if want == "ok" else want
    assert response.status_code == status, response.content[:500]
    if response.status_code >= 400:
        assert "error" in response.json()
    if persona == "anonymous":
        assert response.json()["error"]["code"] == "invalid_api_key"
    if want == "ok" and check.effect is not None:
        assert check.effect(world)
    elif response.status_code >= 400:
        assert _snapshot() == before, "a refused request changed the database"


# --------------------------------------------------------------------------- websocket cells

LOCAL = b"http://localhost"


async def _ws_open(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[bool, dict | None]:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    message = None
    if connected:
        try:
            message = await communicator.receive_json_from(timeout=3)
        except TimeoutError:
            message = None
    await communicator.disconnect()
    return connected, message


def _ws_headers(client, persona: str, origin: bytes = LOCAL) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if persona != "anonymous":
        _login(client, persona)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("key", "index", "persona"), list(_cells("ws")))
def test_websocket_route_answers_each_persona_as_the_matrix_says(
    client, world, key, index, persona
):
    check = MATRIX[key][index]
    path = fill_route(all_routes()[key], world.ids(check.job))

    connected, message = async_to_sync(_ws_open)(path, _ws_headers(client, persona))

    if expected(check, persona) == "ok":
        assert connected is True
        if key == "ws:ws/review/":
            assert message["type"] == "ready" and world.project.pk in message["projects"]
        elif "<int:job_id>" in key:
            assert message["type"] == "snapshot"
            assert message["job"]["id"] == world.job.pk
        else:
            assert message is None or message["type"] == "job"
            assert message is not None  # the project has jobs: the first snapshot arrives
            assert message["job"]["id"] in {world.job.pk, world.failed_job.pk}
    else:
        assert connected is False
        assert message is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ["ws/projects/<int:project_id>/", "ws/jobs/<int:job_id>/"])
def test_a_websocket_from_a_foreign_origin_is_refused_even_for_a_member(client, world, route):
    path = fill_route(route, world.ids())

    connected, _ = async_to_sync(_ws_open)(
        path, _ws_headers(client, "member", origin=b"http://evil.example")
    )

    assert connected is False


@pytest.mark.django_db(transaction=True)
def test_a_job_socket_for_a_job_of_another_project_is_refused(client, world, make_user):
    other = Project.objects.create(name="Elsewhere")
    foreign = job_create(project=other, kind="test.steps", params={"steps": 1})

    connected, _ = async_to_sync(_ws_open)(f"/ws/jobs/{foreign.pk}/", _ws_headers(client, "admin"))

    assert connected is False


# --------------------------------------------------------------------------- beyond the matrix


def test_anonymous_admin_is_redirected_to_the_admin_login(client, db):
    response = client.get("/admin/")

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_a_project_member_without_staff_cannot_use_django_admin(client, world):
    _login(client, "admin")

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


JOB_SCOPED = [key for key, route in http_routes().items() if "<int:job_id>" in route]


@pytest.mark.parametrize("key", JOB_SCOPED)
def test_a_job_of_another_project_is_not_found_through_this_projects_url(client, world, key):
    other = Project.objects.create(name="Elsewhere")
    foreign = job_create(project=other, kind="test.steps", params={"steps": 1})
    Job.objects.filter(pk=foreign.pk).update(state=JobState.FAILED)
    _login(client, "admin")
    check = MATRIX[key][0]
    url = reverse(key, kwargs={"project_id": world.project.pk, "job_id": foreign.pk})

    response = client.get(url) if check.method == "GET" else _send(client, check.method, url)

    assert response.status_code == 404, response.content[:300]
    assert Job.objects.filter(project=other).count() == 1
    assert Job.objects.get(pk=foreign.pk).state == JobState.FAILED


def test_a_membership_of_another_project_cannot_be_changed_through_this_one(
    client, world, make_user
):
    other = Project.objects.create(name="Elsewhere")
    stranger = Membership.objects.create(project=other, user=make_user("stranger"), role="admin")
    _login(client, "admin")

    response = client.post(
        reverse("projects:member_update", args=[world.project.pk, stranger.pk]),
        {"action": "role", "role": "viewer"},
    )

    assert response.status_code == 404
    stranger.refresh_from_db()
    assert stranger.role == "admin"


@pytest.mark.parametrize("key", [k for k, r in http_routes().items() if "<int:project_id>" in r])
def test_a_project_that_does_not_exist_is_not_found_like_a_foreign_one(client, world, key):
    _login(client, "admin")
    check = MATRIX[key][0]
    ids = {**world.ids(check.job), "project_id": world.project.pk + 1000}
    url = fill_route(all_routes()[key], ids)

    response = client.get(url) if check.method == "GET" else _send(client, check.method, url)

    assert response.status_code == 404, response.content[:300]


# --------------------------------------------------------------------------- error shapes of the API


def _failed_job_with_stale_params(project) -> Job:
    """A failed job whose stored params no longer pass its kind's schema (the schema changed)."""
    return Job.objects.create(
        project=project, kind="test.steps", queue="cpu", params={"steps": 0}, state=JobState.FAILED
    )


def test_retrying_a_job_whose_params_no_longer_validate_explains_why_in_html(client, world):
    job = _failed_job_with_stale_params(world.project)
    _login(client, "member")

    response = client.post(reverse("jobs:retry", args=[world.project.pk, job.pk]), follow=True)

    assert response.status_code == 200
    assert "Cannot retry" in response.content.decode()
    assert not Job.objects.filter(retry_of=job).exists()


def test_retrying_a_job_whose_params_no_longer_validate_is_a_400_in_the_api(client, world):
    job = _failed_job_with_stale_params(world.project)
    _login(client, "member")

    response = client.post(reverse("api:job_retry", args=[world.project.pk, job.pk]))

    assert response.status_code == 400
    assert "steps" in response.json()["error"]["fields"]
    assert not Job.objects.filter(retry_of=job).exists()


@pytest.mark.django_db
def test_the_resync_rounds_batched_roles_follow_project_access_for_every_kind_of_user(
    project, people, make_user
):
    """`current_roles` answers for many sockets at once what `project_access` answers for one;
    the two must never disagree (a socket kept open that a page would refuse)."""
    from apps.projects.models import Membership, Project
    from apps.projects.selectors import current_roles, project_access

    other = Project.objects.create(name="Elsewhere")
    Membership.objects.create(project=other, user=people["viewer"], role="admin")
    root = make_user("root")
    root.is_superuser = True
    root.save()
    gone = make_user("gone")
    Membership.objects.create(project=project, user=gone, role="member")
    gone.is_active = False
    gone.save()
    fallen = make_user("fallen")
    fallen.is_superuser, fallen.is_active = True, False
    fallen.save()
    users = [*people.values(), root, gone, fallen]
    projects = [project.pk, other.pk, other.pk + 1000]  # the last one does not exist

    def expected(user, project_id):
        try:
            return project_access(user=user, project_id=project_id).role
        except Http404:
            return None

    pairs = [(u.pk, p) for u in users for p in projects]
    roles = current_roles(pairs)
    assert {pair: roles.get(pair) for pair in pairs} == {
        (u.pk, p): expected(u, p) for u in users for p in projects
    }
    assert roles[root.pk, other.pk] == "admin" and (root.pk, other.pk + 1000) not in roles
    assert (gone.pk, project.pk) not in roles and roles[people["viewer"].pk, other.pk] == "admin"
