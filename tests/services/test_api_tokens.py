"""Personal API tokens: made on the settings page or by `manage.py apitoken`, shown once, stored
hashed, revoked for good; a token acts as its user through the same role checks as the pages;
per-minute rate limits and the job quotas answer 429 with Retry-After."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.api.models import ApiToken
from apps.api.tokens import token_create
from apps.jobs.models import Job
from apps.projects.models import Membership
from apps.quotas.models import PlatformPolicy
from apps.quotas.services import forget_policy

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def _jobs_url(project) -> str:
    return reverse("api:jobs", args=[project.pk])


def test_the_page_shows_a_new_token_once_and_stores_only_its_hash(client, people, project):
    client.force_login(people["member"])
    page = client.post(reverse("tokens:list"), {"name": "notebook", "project": project.pk})
    assert page.status_code == 200
    raw = re.search(r'value="(atl_[A-Za-z0-9_-]+)"', page.content.decode()).group(1)
    token = ApiToken.objects.get(user=people["member"])
    assert token.name == "notebook" and token.project == project
    # Only the hash is stored: the token itself is in no column of the row.
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert raw not in {str(v) for v in row.values()}
    assert token.prefix == raw[:12]
    # Listed afterwards by its prefix only.
    again = client.get(reverse("tokens:list")).content.decode()
    assert token.prefix in again and raw not in again
    # And it works, without a session or a CSRF token, for what the member may do.
    api = Client(enforce_csrf_checks=True)
    listed = api.get(reverse("api:projects"), **bearer(raw))
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()["data"]] == [project.pk]
    made = api.post(
        _jobs_url(project),
        data={"kind": "test.steps", "params": {"steps": 1}},
        content_type="application/json",
        **bearer(raw),
    )
    assert made.status_code == 201, made.content
    assert Job.objects.get(pk=made.json()["id"]).created_by == people["member"]


def test_a_revoked_token_gets_401_even_beside_a_valid_session(client, people, project):
    token, raw = token_create(user=people["member"], name="ci", project_id=project.pk)
    assert Client().get(reverse("api:projects"), **bearer(raw)).status_code == 200
    client.force_login(people["member"])
    revoked = client.post(reverse("tokens:revoke", args=[token.pk]))
    assert revoked.status_code == 302
    for caller in (Client(), client):  # anonymous, and with the owner's session
        answer = caller.get(_jobs_url(project), **bearer(raw))
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_api_key"
        assert answer["WWW-Authenticate"].startswith("Bearer")
    # Someone else cannot revoke (or even see) a token that is not theirs.
    other, _ = token_create(user=people["admin"], name="a", project_id=project.pk)
    assert client.post(reverse("tokens:revoke", args=[other.pk])).status_code == 404
    assert ApiToken.objects.get(pk=other.pk).revoked_at is None


def test_expired_and_unknown_tokens_get_401(people, project):
    token, raw = token_create(
        user=people["member"], name="short", project_id=project.pk, expires_in_days=1
    )
    assert Client().get(reverse("api:projects"), **bearer(raw)).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(reverse("api:projects"), **bearer(raw)).status_code == 401
    assert Client().get(reverse("api:projects"), **bearer(raw[:-2] + "xx")).status_code == 401
    no_auth = Client().get(reverse("api:projects"))
    assert no_auth.status_code == 401
    assert no_auth.json()["error"]["code"] == "unauthorized"


def test_a_token_reaches_no_further_than_its_user(people, project, make_user):
    from apps.projects.models import Project

    elsewhere = Project.objects.create(name="Elsewhere")
    _, raw = token_create(user=people["member"], name="t", project_id=project.pk)
    # Not a member of `elsewhere`: 404, as the pages answer strangers.
    assert Client().get(_jobs_url(elsewhere), **bearer(raw)).status_code == 404
    # A viewer's token cannot launch jobs (403), as the viewer cannot on the pages.
    _, viewer_raw = token_create(user=people["viewer"], name="v", project_id=project.pk)
    refused = Client().post(
        _jobs_url(project),
        data={"kind": "test.steps", "params": {"steps": 1}},
        content_type="application/json",
        **bearer(viewer_raw),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    # Removed from the project later: the token stops reaching it.
    Membership.objects.filter(user=people["member"], project=project).delete()
    assert Client().get(_jobs_url(project), **bearer(raw)).status_code == 404
    # A token is made only for a project its user belongs to.
    client = Client()
    client.force_login(people["outsider"])
    page = client.post(reverse("tokens:list"), {"name": "x", "project": project.pk})
    assert page.status_code == 400
    assert not ApiToken.objects.filter(user=people["outsider"]).exists()


def test_a_session_write_to_the_api_needs_the_csrf_token(people, project):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(people["member"])
    answer = browser.post(
        _jobs_url(project),
        data={"kind": "test.steps", "params": {"steps": 1}},
        content_type="application/json",
    )
    assert answer.status_code == 403
    assert not Job.objects.exists()


def test_bad_fields_name_their_param(people, project):
    _, raw = token_create(user=people["member"], name="t", project_id=project.pk)
    answer = Client().post(
        _jobs_url(project),
        data={"kind": "test.steps", "params": {"steps": "many"}},
        content_type="application/json",
        **bearer(raw),
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "steps" and error["code"] == "invalid_params"
    missing = Client().post(
        _jobs_url(project), data={}, content_type="application/json", **bearer(raw)
    )
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "kind"
    paged = Client().get(_jobs_url(project) + "?limit=0", **bearer(raw))
    assert paged.status_code == 400 and paged.json()["error"]["param"] == "limit"


def test_the_command_makes_lists_and_revokes_tokens(people, project):
    out, err = io.StringIO(), io.StringIO()
    call_command("apitoken", "create", "member", "--name", "cli", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert raw.startswith("atl_") and "shown once" in err.getvalue()
    assert Client().get(reverse("api:projects"), **bearer(raw)).status_code == 200
    token = ApiToken.objects.get(user=people["member"])
    listing = io.StringIO()
    call_command("apitoken", "list", "member", stdout=listing)
    assert token.prefix in listing.getvalue() and raw not in listing.getvalue()
    call_command("apitoken", "revoke", "member", str(token.pk), stdout=io.StringIO())
    assert Client().get(reverse("api:projects"), **bearer(raw)).status_code == 401


@pytest.fixture
def rate_limit():
    before = settings.ATELIER["API_RATE_PER_MINUTE"]
    settings.ATELIER["API_RATE_PER_MINUTE"] = 3
    # Counts are per token id and minute in Redis; ids repeat between tests: start clean.
    from apps.api import ratelimit

    client = ratelimit.redis_client()
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    for key in client.scan_iter(f"{prefix}:ratelimit:*"):
        client.delete(key)
    yield 3
    settings.ATELIER["API_RATE_PER_MINUTE"] = before


def test_past_the_rate_limit_a_token_gets_429_with_retry_after(people, project, rate_limit):
    _, raw = token_create(user=people["member"], name="busy", project_id=project.pk)
    _, other = token_create(user=people["admin"], name="calm", project_id=project.pk)
    answers = [Client().get(reverse("api:projects"), **bearer(raw)) for _ in range(rate_limit + 1)]
    assert [a.status_code for a in answers] == [200] * rate_limit + [429]
    limited = answers[-1]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 61
    # Another token is counted on its own.
    assert Client().get(reverse("api:projects"), **bearer(other)).status_code == 200


def test_a_job_cap_answers_429_with_retry_after(people, project):
    PlatformPolicy.objects.filter(pk=PlatformPolicy.current().pk).update(user_active_jobs=1)
    forget_policy()
    _, raw = token_create(user=people["member"], name="t", project_id=project.pk)

    def submit():
        return Client().post(
            _jobs_url(project),
            data={"kind": "test.steps", "params": {"steps": 1}},
            content_type="application/json",
            **bearer(raw),
        )

    assert submit().status_code == 201
    capped = submit()
    assert capped.status_code == 429, capped.content
    assert capped.json()["error"]["code"] == "quota_exceeded"
    assert int(capped["Retry-After"]) > 0
    assert Job.objects.count() == 1
    forget_policy()
