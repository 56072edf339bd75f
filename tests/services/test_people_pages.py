"""People: platform admins create, invite, reset and deactivate accounts from the site; the
links they hand out are signed, expire and work once; every action is in the audit log."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent

PEOPLE = reverse("accounts:people")
LOGIN = reverse("accounts:login")
STRONG = "velvet-harbour-1927"


@pytest.fixture
def root(make_user):
    return make_user("root", is_staff=True)


@pytest.fixture
def staff_client(client, root):
    client.force_login(root)
    return client


def link_in(response) -> str:
    """The set-password link the page shows once, as a path."""
    page = response.content.decode()
    found = re.search(
        r'id="password-link-value"[^>]*|value="([^"]+)"[^>]*id="password-link-value"', page
    )
    assert found, "no link on the page"
    url = found.group(1)
    return re.sub(r"^https?://[^/]+", "", url)


def set_password(path: str, password: str, *, client=None):
    """Follow a link as its recipient (a fresh browser): open it, then send the new password."""
    client = client or Client()
    opened = client.get(path, follow=True)
    form_url = opened.redirect_chain[-1][0] if opened.redirect_chain else path
    answer = client.post(form_url, {"new_password1": password, "new_password2": password})
    return opened, answer


def can_log_in(username: str, password: str) -> bool:
    client = Client()
    client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR="192.0.2.10")
    return "_auth_user_id" in client.session


def test_people_lists_every_account_to_a_platform_admin(staff_client, people):
    response = staff_client.get(PEOPLE)
    assert response.status_code == 200
    page = response.content.decode()
    for name in ("root", "admin", "member", "reviewer", "viewer", "outsider"):
        assert f"<strong>{name}</strong>" in page


@pytest.mark.parametrize("who", ["admin", "member", "reviewer", "viewer", "outsider"])
def test_people_does_not_exist_for_anyone_else(client, people, who):
    client.force_login(people[who])  # a project admin is not a platform admin
    assert client.get(PEOPLE).status_code == 404
    assert client.post(PEOPLE, {"username": "eve", "password": STRONG}).status_code == 404
    target = people["viewer"].pk
    response = client.post(reverse("accounts:person", args=[target]), {"action": "deactivate"})
    assert response.status_code == 404
    assert not get_user_model().objects.filter(username="eve").exists()
    assert get_user_model().objects.get(pk=target).is_active


def test_an_admin_creates_a_user_with_a_password_who_can_then_log_in(staff_client, root):
    response = staff_client.post(
        PEOPLE, {"username": "dana", "email": "dana@example.com", "password": STRONG}
    )
    assert response.status_code == 302
    assert can_log_in("dana", STRONG)
    event = AuditEvent.objects.get(action="people.user_create")
    assert event.actor == root and event.data == {"username": "dana", "invited": False}
    assert STRONG not in str(event.data)


def test_a_weak_initial_password_is_refused_and_creates_nobody(staff_client):
    response = staff_client.post(PEOPLE, {"username": "dana", "password": "12345678"})
    assert response.status_code == 400
    assert "This password is too common." in response.content.decode()
    assert not get_user_model().objects.filter(username="dana").exists()
    assert not AuditEvent.objects.filter(action__startswith="people.").exists()


def test_a_username_taken_in_another_case_is_refused(staff_client, people):
    response = staff_client.post(PEOPLE, {"username": "Member", "password": STRONG})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert get_user_model().objects.filter(username__iexact="member").count() == 1


def test_an_invited_user_sets_a_password_through_the_link_and_logs_in(staff_client, root):
    response = staff_client.post(PEOPLE, {"username": "erin", "email": ""})
    assert response.status_code == 200
    assert "Invitation for erin" in response.content.decode()
    path = link_in(response)
    erin = get_user_model().objects.get(username="erin")
    assert not erin.has_usable_password()

    opened, answer = set_password(path, STRONG)
    assert "Choose a password" in opened.content.decode()
    assert answer.status_code == 302 and answer.url == LOGIN
    assert can_log_in("erin", STRONG)
    actions = AuditEvent.objects.filter(target_id=str(erin.pk)).order_by("id")
    assert list(actions.values_list("action", flat=True)) == [
        "people.user_create",
        "auth.password_set_by_link",
    ]


def test_a_link_works_only_once(staff_client):
    path = link_in(staff_client.post(PEOPLE, {"username": "erin"}))
    set_password(path, STRONG)
    opened, answer = set_password(path, "another-long-phrase-88")
    assert "This link does not work" in opened.content.decode()
    assert can_log_in("erin", STRONG) and not can_log_in("erin", "another-long-phrase-88")


def test_an_expired_link_does_not_work(staff_client, settings):
    path = link_in(staff_client.post(PEOPLE, {"username": "erin"}))
    settings.PASSWORD_RESET_TIMEOUT = -1  # every link is past its lifetime
    opened, _answer = set_password(path, STRONG)
    assert "This link does not work" in opened.content.decode()
    assert not get_user_model().objects.get(username="erin").has_usable_password()


def test_a_tampered_link_does_not_work(staff_client, people):
    path = link_in(staff_client.post(PEOPLE, {"username": "erin"}))
    # The same token on another account's id.
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    other = urlsafe_base64_encode(force_bytes(people["member"].pk))
    forged = re.sub(r"/set-password/[^/]+/", f"/set-password/{other}/", path)
    opened, _answer = set_password(forged, STRONG)
    assert "This link does not work" in opened.content.decode()
    assert can_log_in("member", "pw-member")


def test_the_link_page_checks_the_new_password_with_the_validators(staff_client):
    path = link_in(staff_client.post(PEOPLE, {"username": "erin"}))
    _opened, answer = set_password(path, "erin")
    assert answer.status_code == 200
    assert "too short" in answer.content.decode()
    assert not get_user_model().objects.get(username="erin").has_usable_password()


def test_a_reset_stops_the_old_password_and_ends_sessions_then_the_link_sets_a_new_one(
    staff_client, root, people
):
    member = people["member"]
    members_browser = Client()
    members_browser.force_login(member)
    assert members_browser.get(reverse("projects:list")).status_code == 200

    response = staff_client.post(reverse("accounts:person", args=[member.pk]), {"action": "reset"})
    assert response.status_code == 200
    assert "Password reset for member" in response.content.decode()
    assert not can_log_in("member", "pw-member")
    assert members_browser.get(reverse("projects:list")).status_code == 302  # logged out

    set_password(link_in(response), STRONG)
    assert can_log_in("member", STRONG)
    event = AuditEvent.objects.get(action="people.password_reset")
    assert event.actor == root and event.target_id == str(member.pk)


def test_a_new_invitation_link_replaces_a_lost_one(staff_client):
    first = link_in(staff_client.post(PEOPLE, {"username": "erin"}))
    erin = get_user_model().objects.get(username="erin")
    second = link_in(
        staff_client.post(reverse("accounts:person", args=[erin.pk]), {"action": "invite"})
    )
    assert AuditEvent.objects.filter(action="people.invite", target_id=str(erin.pk)).count() == 1
    set_password(second, STRONG)
    assert can_log_in("erin", STRONG)
    opened, _answer = set_password(first, "another-long-phrase-88")
    assert "This link does not work" in opened.content.decode()


def test_a_user_with_a_password_gets_no_invitation(staff_client, people):
    url = reverse("accounts:person", args=[people["member"].pk])
    response = staff_client.post(url, {"action": "invite"}, follow=True)
    assert "reset it instead" in response.content.decode()
    assert can_log_in("member", "pw-member")
    assert not AuditEvent.objects.filter(action="people.invite").exists()


def test_a_deactivated_user_cannot_log_in_and_is_logged_out_until_reactivated(
    staff_client, root, people
):
    viewer = people["viewer"]
    viewers_browser = Client()
    viewers_browser.force_login(viewer)
    url = reverse("accounts:person", args=[viewer.pk])

    response = staff_client.post(url, {"action": "deactivate"}, follow=True)
    assert "viewer can no longer log in" in response.content.decode()
    assert viewers_browser.get(reverse("projects:list")).status_code == 302
    assert not can_log_in("viewer", "pw-viewer")

    staff_client.post(url, {"action": "activate"})
    assert can_log_in("viewer", "pw-viewer")
    actions = AuditEvent.objects.filter(action__startswith="people.").order_by("id")
    assert list(actions.values_list("action", flat=True)) == [
        "people.deactivate",
        "people.activate",
    ]


def test_an_admin_cannot_deactivate_themselves(staff_client, root):
    response = staff_client.post(
        reverse("accounts:person", args=[root.pk]), {"action": "deactivate"}, follow=True
    )
    assert "cannot deactivate your own account" in response.content.decode()
    root.refresh_from_db()
    assert root.is_active


def test_a_deactivated_user_cannot_use_a_link(staff_client):
    path = link_in(staff_client.post(PEOPLE, {"username": "erin"}))
    erin = get_user_model().objects.get(username="erin")
    staff_client.post(reverse("accounts:person", args=[erin.pk]), {"action": "deactivate"})
    opened, _answer = set_password(path, STRONG)
    assert "This link does not work" in opened.content.decode()
    erin.refresh_from_db()
    assert not erin.has_usable_password()


def test_logins_with_a_password_set_by_link_are_still_throttled(staff_client, settings):
    path = link_in(staff_client.post(PEOPLE, {"username": "erin"}))
    set_password(path, STRONG)
    browser = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        browser.post(LOGIN, {"username": "erin", "password": "wrong"}, REMOTE_ADDR="192.0.2.99")
    refused = browser.post(
        LOGIN, {"username": "erin", "password": STRONG}, REMOTE_ADDR="192.0.2.99"
    )
    assert refused.status_code == 429
    assert "_auth_user_id" not in browser.session


def test_the_link_lifetime_is_what_the_page_says(staff_client, settings):
    settings.PASSWORD_RESET_TIMEOUT = int(timedelta(days=3).total_seconds())
    response = staff_client.post(PEOPLE, {"username": "erin"})
    assert "for 72 hours" in response.content.decode()
