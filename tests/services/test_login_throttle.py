"""Login throttling (django-axes): per username and per address, on the app and admin logins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.test import AsyncClient, RequestFactory
from django.urls import reverse
from django.utils import timezone

from apps.accounts.lockout import wants_json
from apps.audit.models import AuditEvent

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"


def post_login(client, username, password, *, ip=ATTACKER, url=LOGIN, **extra):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip, **extra)


def wrong(client, username, times, *, ip=ATTACKER, url=LOGIN):
    for _ in range(times):
        post_login(client, username, "not-the-password", ip=ip, url=url)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def alice(make_user):
    return make_user("alice")


def test_fifty_wrong_passwords_then_the_right_one_does_not_log_in(client, alice):
    wrong(client, "alice", 50)

    response = post_login(client, "alice", "pw-alice")

    assert response.status_code == 429
    assert not logged_in(client)
    assert client.get(reverse("projects:list")).status_code == 302  # still the login page


def test_fifty_wrong_passwords_then_the_right_one_does_not_log_in_to_the_admin(client, make_user):
    make_user("root", is_staff=True, is_superuser=True)
    wrong(client, "root", 50, url=ADMIN_LOGIN)

    response = post_login(client, "root", "pw-root", url=ADMIN_LOGIN)

    assert response.status_code == 429
    assert not logged_in(client)
    assert client.get("/admin/").status_code == 302


def test_the_lockout_page_says_when_to_try_again(client, alice):
    wrong(client, "alice", 5)

    response = post_login(client, "alice", "pw-alice")

    assert response.status_code == 429
    body = response.content.decode()
    assert "Too many failed logins" in body
    assert "Try again after" in body and "(in 15 minutes)" in body
    retry_after = int(response["Retry-After"])
    assert 14 * 60 < retry_after <= 15 * 60
    assert 'href="/static/css/atelier.css"' in body  # the site's own styled page, not a bare 403
    assert "pw-alice" not in body


def test_the_lockout_answer_is_json_for_scripts(client, alice):
    wrong(client, "alice", 5)

    response = post_login(client, "alice", "pw-alice", HTTP_ACCEPT="application/json")

    assert response.status_code == 429
    data = response.json()
    assert 14 * 60 < data["retry_after"] <= 15 * 60
    assert data["retry_at"] and "Try again later" in data["detail"]
    assert wants_json(RequestFactory().post("/api/v1/projects/"))


def test_the_lockout_page_comes_from_the_async_middleware_too(db, alice):
    # uvicorn runs the middleware chain async; axes passes its arguments differently there.
    client = AsyncClient()
    for _ in range(5):
        async_to_sync(client.post)(
            LOGIN, {"username": "alice", "password": "wrong"}, REMOTE_ADDR=ATTACKER
        )

    response = async_to_sync(client.post)(
        LOGIN, {"username": "alice", "password": "pw-alice"}, REMOTE_ADDR=ATTACKER
    )

    assert response.status_code == 429
    assert "Try again after" in response.content.decode()


def test_a_lockout_is_audited_once(client, alice):
    wrong(client, "alice", 50)
    post_login(client, "alice", "pw-alice")

    lockouts = AuditEvent.objects.filter(action="auth.lockout")
    assert lockouts.count() == 1
    event = lockouts.get()
    assert event.actor_username == "alice"
    assert event.ip_address == ATTACKER
    assert sorted(event.data["locked"]) == ["ip_address", "username"]
    assert event.data["failures"] == 5 and event.data["retry_at"]
    assert AuditEvent.objects.filter(action="auth.login").count() == 0


def test_four_failures_do_not_lock_and_the_fifth_does(client, alice):
    wrong(client, "alice", 4)
    assert AuditEvent.objects.filter(action="auth.lockout").count() == 0

    wrong(client, "alice", 1)

    assert AuditEvent.objects.filter(action="auth.lockout").count() == 1
    assert post_login(client, "alice", "pw-alice").status_code == 429


def test_a_different_address_with_another_username_is_not_blocked(client, alice, make_user):
    make_user("bob")
    wrong(client, "alice", 10)

    response = post_login(client, "bob", "pw-bob", ip=ELSEWHERE)

    assert response.status_code == 302
    assert logged_in(client)


def test_the_locked_username_is_refused_from_any_address(client, alice):
    wrong(client, "alice", 5)

    assert post_login(client, "alice", "pw-alice", ip=ELSEWHERE).status_code == 429


def test_the_locked_address_is_refused_for_any_username(client, make_user):
    make_user("bob")
    for name in ("carol", "dave", "erin", "frank", "grace"):  # password spraying
        wrong(client, name, 1)

    assert post_login(client, "bob", "pw-bob").status_code == 429
    assert post_login(client, "bob", "pw-bob", ip=ELSEWHERE).status_code == 302


def test_the_right_password_works_again_after_the_cool_off(client, alice):
    wrong(client, "alice", 5)
    assert post_login(client, "alice", "pw-alice").status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = post_login(client, "alice", "pw-alice")

    assert response.status_code == 302
    assert logged_in(client)


def test_a_successful_login_forgives_the_users_own_failures(client, alice):
    wrong(client, "alice", 4)
    assert post_login(client, "alice", "pw-alice").status_code == 302
    client.logout()

    wrong(client, "alice", 4)

    assert post_login(client, "alice", "pw-alice").status_code == 302


def test_logging_in_to_ones_own_account_does_not_reset_guesses_at_another(client, alice, make_user):
    make_user("mallory")
    wrong(client, "alice", 4)
    assert post_login(client, "mallory", "pw-mallory").status_code == 302
    client.logout()

    wrong(client, "alice", 1)

    assert post_login(client, "alice", "pw-alice", ip=ELSEWHERE).status_code == 429


def test_the_test_client_login_and_force_login_still_work(client, alice):
    assert client.login(username="alice", password="pw-alice")
    client.logout()
    client.force_login(alice)
    assert client.get(reverse("projects:list")).status_code == 200


def test_the_lockout_page_speaks_chinese(client, alice):
    client.cookies["django_language"] = "zh-hans"
    wrong(client, "alice", 5)

    body = post_login(client, "alice", "pw-alice").content.decode()

    assert "登录失败次数过多" in body and "分钟后" in body
