"""The UI speaks English by default and Simplified Chinese when the browser or the user asks for it."""

from __future__ import annotations

import ast
import gettext
import html
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from apps.jobs.services import job_claim, job_create

CATALOGUE = Path(settings.LOCALE_PATHS[0]) / "zh_Hans" / "LC_MESSAGES"


@pytest.fixture(autouse=True)
def _english_afterwards():
    # LocaleMiddleware leaves the last request's language active in this thread: do not leak Chinese
    # into tests that read labels outside a request.
    yield
    translation.deactivate()


def _text(response) -> str:
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _login(client, user):
    assert client.login(username=user.username, password=f"pw-{user.username}")
    return client


# --------------------------------------------------------------------------- login page


def test_the_login_page_is_english_by_default(client):
    page = _text(client.get(reverse("accounts:login")))

    assert '<html lang="en">' in page
    assert "Log in" in page and "Password" in page
    assert "登录" not in page


@pytest.mark.parametrize("accept", ["zh-Hans", "zh-CN", "zh-CN,zh;q=0.9,en;q=0.8"])
def test_a_chinese_browser_gets_a_chinese_login_page(client, accept):
    page = _text(client.get(reverse("accounts:login"), headers={"accept-language": accept}))

    assert '<html lang="zh-hans">' in page
    assert "<title>登录 · Atelier</title>" in page
    for zh in ("用户名", "密码", "请登录你的账户以继续。"):
        assert zh in page
    assert ">Log in<" not in page


def test_an_english_browser_stays_english(client):
    page = _text(
        client.get(reverse("accounts:login"), headers={"accept-language": "en-US,en;q=0.9"})
    )

    assert "Log in" in page and "登录" not in page


# --------------------------------------------------------------------------- dashboard


@pytest.fixture
def queued_job(project, people):
    return job_create(
        project=project, kind="test.steps", params={"steps": 2}, created_by=people["member"]
    )


def test_the_dashboard_follows_the_language_cookie(client, project, people, queued_job):
    _login(client, people["member"])
    url = reverse("projects:dashboard", args=[project.pk])

    english = _text(client.get(url))
    assert "Jobs" in english and "Queued" in english and "任务" not in english

    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    page = _text(client.get(url))

    assert '<html lang="zh-hans">' in page
    for zh in ("概览", "成员", "任务", "开始新任务", "退出登录"):
        assert zh in page, zh
    # gettext_lazy labels from Python: the job's state and the member's role badge.
    row = page.split(f'data-job-id="{queued_job.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "排队中" in row
    assert re.search(r'<span class="badge role">\s*成员\s*</span>', page)
    # Strings handed to the live JavaScript are translated too.
    assert '"running": "运行中"' in page


def test_switching_language_with_the_header_buttons(client, project, people):
    _login(client, people["member"])
    dashboard = reverse("projects:dashboard", args=[project.pk])

    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": dashboard})
    assert response.status_code == 302 and response["Location"] == dashboard
    page = _text(client.get(dashboard))
    assert "任务" in page and "开始" in page
    assert 'value="zh-hans" lang="zh-hans" aria-pressed="true"' in page

    client.post(reverse("set_language"), {"language": "en", "next": dashboard})
    page = _text(client.get(dashboard))
    assert "Jobs" in page and "任务" not in page


def test_the_job_page_in_chinese(client, project, people, queued_job):
    job_claim(job_id=queued_job.pk, worker_id="worker-a")
    _login(client, people["member"])
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    page = _text(client.get(queued_job.get_absolute_url()))

    for zh in ("运行中", "详情", "尝试次数", "开始时间", "结束时间", "日志", "进度"):
        assert zh in page, zh
    # job.js fills Started/Finished live only where the server had no time (data-ts empty).
    assert re.search(r'id="job-started" data-ts="\d{4}-', page)
    assert 'id="job-finished" data-ts=""' in page


# --------------------------------------------------------------------------- the catalogue


def _po_entries(path: Path) -> dict[tuple[str | None, str], list[str]]:
    """(msgctxt, msgid) -> msgstr forms, for the simple .po files makemessages writes."""
    entries: dict[tuple[str | None, str], list[str]] = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        current = None
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) (\".*\")$", line)
            if m:
                current = m.group(1)
                fields[current] = ast.literal_eval(m.group(2))
            elif line.startswith('"') and current:
                fields[current] += ast.literal_eval(line)
        if fields.get("msgid"):
            forms = [v for k, v in sorted(fields.items()) if k.startswith("msgstr")]
            entries[(fields.get("msgctxt"), fields["msgid"])] = forms
    return entries


def test_every_message_is_translated_and_compiled():
    po = CATALOGUE / "django.po"
    text = po.read_text(encoding="utf-8")
    assert "#, fuzzy" not in text

    entries = _po_entries(po)
    assert len(entries) > 50
    untranslated = [key for key, forms in entries.items() if not all(forms)]
    assert not untranslated

    # The committed .mo must match the .po: forgetting compilemessages shows English to Chinese users.
    with open(CATALOGUE / "django.mo", "rb") as fh:
        mo = gettext.GNUTranslations(fh)
    for (ctx, msgid), forms in entries.items():
        got = mo.pgettext(ctx, msgid) if ctx else mo.gettext(msgid)
        assert got == forms[0], (ctx, msgid)


def test_python_labels_are_translated():
    from apps.jobs.states import JobState
    from apps.projects.models import Role

    with translation.override("zh-hans"):
        assert [str(label) for _, label in JobState.choices] == [
            "排队中",
            "运行中",
            "正在取消",
            "已成功",
            "失败",
            "已取消",
        ]
        assert dict(Role.choices) == {
            "admin": "管理员",
            "member": "成员",
            "reviewer": "审核员",
            "viewer": "访客",
        }
