"""A member whose role may not open a page gets the site's own 403 page, and the log gets one line
for it, not a traceback (issue 19, item 4)."""

from __future__ import annotations

import logging

from django.urls import reverse

from webapp.logfilters import ForbiddenOnOneLine


def test_a_reviewer_on_a_member_only_page_sees_the_styled_403(client, project, people):
    client.force_login(people["reviewer"])
    response = client.get(reverse("finetunes:new", args=[project.pk]))
    assert response.status_code == 403
    page = response.content.decode()
    assert 'class="topbar"' in page  # in the site's frame, with its navigation
    assert "Not allowed" in page and "cannot launch jobs" in page
    assert reverse("projects:list") in page


def test_a_403_is_logged_on_one_line_without_its_traceback():
    handlers = logging.getLogger().handlers
    assert any(isinstance(f, ForbiddenOnOneLine) for h in handlers for f in h.filters)
    try:
        raise PermissionError("role")
    except PermissionError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Forbidden: %s", ("/x/",), exc_info
    )
    record.status_code = 403
    assert ForbiddenOnOneLine().filter(record) and record.exc_info is None
    record500 = logging.LogRecord(
        "django.request", logging.ERROR, __file__, 1, "Error: %s", ("/x/",), exc_info
    )
    record500.status_code = 500
    assert ForbiddenOnOneLine().filter(record500) and record500.exc_info is not None
