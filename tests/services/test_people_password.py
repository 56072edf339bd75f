"""A user changes their own password on a page in the site's frame: the validators apply, the
old password stops working, other sessions end, this one stays, and the change is audited."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent

PAGE = reverse("accounts:password_change")
STRONG = "velvet-harbour-1927"


def change(client, old: str, new: str):
    return client.post(PAGE, {"old_password": old, "new_password1": new, "new_password2": new})


def can_log_in(username: str, password: str) -> bool:
    client = Client()
    client.post(
        reverse("accounts:login"),
        {"username": username, "password": password},
        REMOTE_ADDR="192.0.2.10",
    )
    return "_auth_user_id" in client.session


def test_the_page_is_in_the_sites_frame(client, member):
    client.force_login(member)
    response = client.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="topbar"' in page and "Change your password" in page


def test_a_user_changes_their_password_and_stays_logged_in_here_only(client, member):
    elsewhere = Client()
    elsewhere.force_login(member)
    client.force_login(member)

    response = change(client, "pw-member", STRONG)
    assert response.status_code == 302
    assert client.get(reverse("projects:list")).status_code == 200
    assert elsewhere.get(reverse("projects:list")).status_code == 302
    assert can_log_in("member", STRONG) and not can_log_in("member", "pw-member")
    event = AuditEvent.objects.get(action="auth.password_change")
    assert event.actor == member and event.target_id == str(member.pk)


def test_the_success_message_is_shown(client, member):
    client.force_login(member)
    response = client.post(
        PAGE,
        {"old_password": "pw-member", "new_password1": STRONG, "new_password2": STRONG},
        follow=True,
    )
    assert "Your password was changed." in response.content.decode()


def test_a_wrong_old_password_changes_nothing(client, member):
    client.force_login(member)
    response = change(client, "not-it", STRONG)
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in response.content.decode()
    assert can_log_in("member", "pw-member")
    assert not AuditEvent.objects.filter(action="auth.password_change").exists()


def test_a_weak_new_password_is_refused(client, member):
    client.force_login(member)
    response = change(client, "pw-member", "password")
    assert "This password is too common." in response.content.decode()
    assert can_log_in("member", "pw-member")


def test_an_anonymous_visitor_is_sent_to_log_in(client, db):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))
