"""Codes stay codes, people read words: moderation categories, inbox kinds, rule kinds and the
built-in models' notes are shown in the page's language, while forms keep sending the codes."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from apps.models.models import BaseModel, ModelSource
from apps.models.services import ensure_builtin_rows
from apps.moderation.services import ruleset_current, ruleset_save
from apps.outputs.services import output_create

pytestmark = pytest.mark.django_db


def zh(client, user):
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    return client


def page(response) -> str:
    assert response.status_code == 200
    return html.unescape(response.content.decode())


@pytest.fixture
def flagged(project, people):
    ruleset_current(project.pk)
    ruleset_save(
        project=project,
        rows=[{"kind": "keyword", "pattern": "zorblax", "category": "custom", "severity": "flag"}],
        actor=people["admin"],
    )
    return output_create(
        project_id=project.pk,
        kind="text",
        sha256="0" * 64,
        created_by_id=people["member"].pk,
        text="zorblax here",
        prompt="a prompt",
    )


def test_the_inbox_names_categories_and_kinds_in_chinese_and_filters_by_their_codes(
    client, people, flagged
):
    zh(client, people["reviewer"])
    url = reverse("review:inbox")
    text = page(client.get(url))

    assert '<option value="sexual/minors">色情：涉及未成年人</option>' in text
    assert '<option value="dataset">数据集</option>' in text
    assert re.search(r'<span class="badge">文本</span>', text)
    assert re.search(r'class="gl-chip gl-chip-sm rv-cat">自定义</span>', text)
    assert "<code>chosen</code>" in text
    assert ">sexual/minors<" not in text and ">harassment<" not in text

    filtered = page(client.get(url, {"category": "custom", "kind": "text"}))
    assert f'data-item="output:{flagged.project_id}:{flagged.pk}"' in filtered
    assert '<option value="custom" selected>自定义</option>' in filtered


def test_the_rules_page_offers_words_and_keeps_the_codes_as_values(client, project, people):
    ruleset_current(project.pk)
    zh(client, people["admin"])
    text = page(client.get(reverse("review:rules", args=[project.pk])))

    assert '<option value="regex">正则表达式</option>' in text
    assert '<option value="flag" selected>标记</option>' in text
    # A new row starts as the project's own category.
    assert '<option value="custom" selected>自定义</option>' in text


def test_a_built_in_models_note_is_in_the_page_language_and_an_admins_note_as_written(db):
    ensure_builtin_rows()
    tiny = BaseModel.objects.get(reference="tiny-sd")
    own = BaseModel.objects.create(
        name="mine",
        source=ModelSource.FOLDER,
        reference="/models/mine",
        info={"note": "Trained on our own scans."},
    )
    with translation.override("zh-hans"):
        assert tiny.note == "用代码构建的微型随机管线：用于快速冒烟检查，输出为噪声。"
        assert own.note == "Trained on our own scans."
    with translation.override("en"):
        assert tiny.note.startswith("A tiny random pipeline built in code")


def test_the_estimate_says_in_chinese_that_a_model_is_prepared_first(client, project, people):
    ensure_builtin_rows()
    tiny = BaseModel.objects.get(reference="tiny-llama")
    assert not tiny.is_ready
    zh(client, people["member"])
    response = client.post(
        reverse("finetunes:estimate", args=[project.pk]),
        json.dumps({"method": "sft", "base_model_id": tiny.pk}),
        content_type="application/json",
    )

    assert response.json() == {"pending": f"{tiny.name} 会在首次使用时准备；准备好之后才显示估算。"}
