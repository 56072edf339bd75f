"""The preference loop page: its counts follow the database, each empty stage says what to do
next, exports come back to it, and its "compare" links open the playground preselected."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.urls import reverse

from apps.datasets.models import Approval, DatasetVersion
from apps.finetunes.lineage import build_lineage
from apps.models.models import Adapter, AdapterKind, BaseModel
from apps.outputs.models import Moderation
from apps.projects.models import Project
from apps.projects.selectors import ProjectAccess
from apps.review.exports import preference_export
from apps.review.services import output_decide
from tests.factories import make_output

PROMPT = "How should I treat a mild fever?"


def _page(client, user, project) -> str:
    client.force_login(user)
    response = client.get(reverse("review:loop", args=[project.pk]))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _counts(page: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-count="(\w+)">(\d+)<', page)}


def _decide(project, reviewer, output, approve: bool) -> None:
    output_decide(
        access=ProjectAccess(project=project, role="reviewer"),
        actor=reviewer,
        output_id=output.pk,
        approve=approve,
        reason="" if approve else "harmful advice",
    )


@pytest.fixture
def outputs(project, people):
    """Four text outputs of one prompt awaiting review, one clean, one image (not counted)."""
    member = people["member"]
    made = {
        name: make_output(project, member, moderation=Moderation.FLAGGED, prompt=PROMPT, text=text)
        for name, text in (
            ("good", "Rest and drink water."),
            ("bad", "Take ten aspirin at once."),
            ("good2", "Fluids and rest."),
            ("bad2", "Ignore it for a month."),
        )
    }
    made["clean"] = make_output(project, member, prompt="Hello", text="Hi there.")
    make_output(project, member, kind="image", prompt="a cat", moderation=Moderation.FLAGGED)
    return made


@pytest.fixture
def base_model(db):
    return BaseModel.objects.create(
        name="tiny-test", kind="text", source="folder", path="/nowhere", status="ready"
    )


def test_the_counts_follow_the_database_as_a_reviewer_decides(client, project, people, outputs):
    before = _counts(_page(client, people["viewer"], project))
    assert before == {
        "generated": 5,
        "flagged": 4,
        "pending": 4,
        "approved": 0,
        "rejected": 0,
        "since_export": 0,
        "pairs": 0,
        "dpo_adapters": 0,
    }

    _decide(project, people["reviewer"], outputs["good"], approve=True)
    _decide(project, people["reviewer"], outputs["bad"], approve=False)

    after = _counts(_page(client, people["viewer"], project))
    assert (after["pending"], after["approved"], after["rejected"]) == (2, 1, 1)
    assert (after["since_export"], after["pairs"], after["flagged"]) == (2, 1, 4)


def test_an_export_from_the_page_comes_back_to_it_and_resets_decisions_since(
    client, project, people, outputs
):
    _decide(project, people["reviewer"], outputs["good"], approve=True)
    _decide(project, people["reviewer"], outputs["bad"], approve=False)
    page = _page(client, people["reviewer"], project)
    assert 'id="loop-export-form"' in page  # reviewers may export

    loop_url = reverse("review:loop", args=[project.pk])
    response = client.post(
        reverse("review:preference_export"),
        {"project": project.pk, "dataset_name": "prefs", "next": loop_url},
    )

    assert response.status_code == 302 and response["Location"] == loop_url
    page = _page(client, people["reviewer"], project)
    counts = _counts(page)
    assert (counts["since_export"], counts["pairs"]) == (0, 1)
    assert 'id="loop-up-to-date"' in page and "prefs v1" in page

    _decide(project, people["reviewer"], outputs["bad2"], approve=False)

    counts = _counts(_page(client, people["reviewer"], project))
    assert (counts["since_export"], counts["pairs"]) == (1, 2)


def test_an_outside_next_address_is_not_followed(client, project, people, outputs):
    _decide(project, people["reviewer"], outputs["good"], approve=True)
    _decide(project, people["reviewer"], outputs["bad"], approve=False)
    client.force_login(people["reviewer"])

    response = client.post(
        reverse("review:preference_export"),
        {"project": project.pk, "dataset_name": "prefs", "next": "https://evil.example/"},
    )

    assert response["Location"] == DatasetVersion.objects.get().get_absolute_url()


def test_each_empty_stage_says_what_to_do_next(client, project, people):
    page = _page(client, people["member"], project)

    for stage in ("generate", "flag", "decide", "export", "dpo", "compare"):
        assert f'data-next="{stage}"' in page, stage
    assert reverse("playground:index", args=[project.pk]) in page
    assert 'id="loop-export-form"' not in page  # members do not export


def test_versions_show_their_adapters_and_links_to_train_and_compare(
    client, project, people, outputs, base_model
):
    _decide(project, people["reviewer"], outputs["good"], approve=True)
    _decide(project, people["reviewer"], outputs["bad"], approve=False)
    version = preference_export(project=project, actor=people["reviewer"], dataset_name="prefs")
    DatasetVersion.objects.filter(pk=version.pk).update(approval=Approval.APPROVED)
    sft = Adapter.objects.create(
        project=project, name="sft-1", base_model=base_model, storage_path="x/adapter"
    )
    dpo = Adapter.objects.create(
        project=project,
        name="dpo-1",
        base_model=base_model,
        storage_path="y/adapter",
        kind=AdapterKind.DPO,
        parent=sft,
        dataset_version=version,
        lineage=build_lineage(base=base_model, versions=[version], parent=sft, job_id=None),
    )

    page = _page(client, people["member"], project)

    row = page[page.index(f'<tr data-version-id="{version.pk}"') :]
    row = row[: row.index("</tr>")]
    assert f'data-adapter-id="{dpo.pk}"' in row and "1 approved, 1 rejected" in row
    train = re.search(r'href="([^"]+)" data-train-dpo', row).group(1)
    assert train == reverse("finetunes:new", args=[project.pk]) + (
        f"?method=dpo&version={version.pk}"
    )
    assert _counts(page)["dpo_adapters"] == 1
    compare = re.search(rf'href="([^"]+)" data-compare="{dpo.pk}"', page).group(1)
    query = parse_qs(urlparse(compare).query)
    assert urlparse(compare).path == reverse("playground:index", args=[project.pk])
    assert query == {"adapters": [f"{sft.pk},{dpo.pk}"], "prompt": [PROMPT]}


def test_the_loop_page_is_not_found_for_a_non_member(client, project, people):
    client.force_login(people["outsider"])

    assert client.get(reverse("review:loop", args=[project.pk])).status_code == 404


def test_the_project_page_links_to_the_loop(client, project, people):
    client.force_login(people["viewer"])

    page = client.get(reverse("projects:dashboard", args=[project.pk])).content.decode()

    assert reverse("review:loop", args=[project.pk]) in page


# ---------------------------------------------------------------- the playground's preselection


def _select(page: str, slot: int) -> str:
    start = page.index(f'id="pg-adapter-{slot}"')
    return page[start : page.index("</select>", start)]


def _selected(fragment: str) -> list[str]:
    return re.findall(r'<option value="(\d+)"[^>]*selected', fragment)


def test_the_playground_preselects_the_projects_adapters_from_the_query(
    client, project, people, base_model
):
    other_base = BaseModel.objects.create(name="other", source="folder", status="ready")
    old = Adapter.objects.create(project=project, name="old", base_model=base_model)
    new = Adapter.objects.create(project=project, name="new", base_model=base_model)
    elsewhere = Adapter.objects.create(
        project=Project.objects.create(name="Elsewhere"), name="theirs", base_model=base_model
    )
    off_base = Adapter.objects.create(project=project, name="other-base", base_model=other_base)
    client.force_login(people["viewer"])

    response = client.get(
        reverse("playground:index", args=[project.pk]),
        {"adapters": f"{elsewhere.pk},{old.pk},{off_base.pk},{new.pk}", "prompt": "Is <b> bold?"},
    )

    page = response.content.decode()
    assert _selected(_select(page, 1)) == [str(old.pk)]
    assert _selected(_select(page, 2)) == [str(new.pk)]  # same base as the first; others dropped
    assert "theirs" not in page  # another project's adapter is neither offered nor chosen
    base_select = page[page.index('id="pg-base_model_id"') : page.index("</select>")]
    assert _selected(base_select) == [str(base_model.pk)]
    assert "Is &lt;b&gt; bold?</textarea>" in page


def test_the_playground_keeps_its_single_adapter_link_and_offers_no_reward_model(
    client, project, people, base_model
):
    sft = Adapter.objects.create(project=project, name="sft", base_model=base_model)
    reward = Adapter.objects.create(
        project=project, name="scorer", base_model=base_model, kind=AdapterKind.REWARD
    )
    client.force_login(people["viewer"])

    page = client.get(
        reverse("playground:index", args=[project.pk]), {"adapter": sft.pk}
    ).content.decode()

    assert _selected(_select(page, 1)) == [str(sft.pk)] and _selected(_select(page, 2)) == []
    assert f'<option value="{reward.pk}"' not in page
