"""Compare runs: the chosen fine-tune jobs' stored metric series, overlaid; jobs of other projects
(or not fine-tunes) are not found; the picker lists the project's fine-tunes of every kind."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from apps.jobs.models import EventKind, Job
from apps.jobs.services import job_append_events
from apps.models.models import Adapter, BaseModel
from apps.projects.models import Project


def _job(project, kind: str, points: list[tuple[int, dict]], **params) -> Job:
    job = Job.objects.create(project=project, kind=kind, queue="gpu", params=params)
    events = [(EventKind.METRICS, {"step": step, "values": values}) for step, values in points]
    job_append_events(job_id=job.pk, events=events)
    return job


@pytest.fixture
def runs(project):
    sft = _job(
        project,
        "finetune.lora",
        [(1, {"loss": 2.0}), (2, {"loss": 1.5}), (2, {"eval_loss": 1.9}), (3, {"loss": 1.2})],
        name="sft run",
    )
    # A resumed attempt reports step 2 again: the newer value wins, as on the job page.
    dpo = _job(
        project,
        "finetune.dpo",
        [
            (1, {"loss": 0.69, "rewards/accuracies": 0.5}),
            (2, {"loss": 0.70}),
            (2, {"loss": 0.60, "rewards/accuracies": 0.75}),
        ],
    )
    base = BaseModel.objects.create(name="tiny-base", source="folder", status="ready")
    Adapter.objects.create(
        project=project, name="dpo adapter", base_model=base, job=dpo, storage_path="x"
    )
    other_kind = Job.objects.create(project=project, kind="textgen", queue="gpu")
    return {"sft": sft, "dpo": dpo, "textgen": other_kind}


def _get(client, user, project, query):
    client.force_login(user)
    return client.get(reverse("jobs:compare", args=[project.pk]), query)


def _data(response) -> dict:
    assert response.status_code == 200
    found = re.search(
        r'<script id="cmp-data" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    return json.loads(found.group(1))


def test_each_jobs_series_comes_back_one_point_per_step(client, project, people, runs):
    sft, dpo = runs["sft"], runs["dpo"]

    data = _data(_get(client, people["viewer"], project, {"jobs": f"{sft.pk},{dpo.pk}"}))

    assert [j["id"] for j in data["jobs"]] == [sft.pk, dpo.pk]
    assert [j["label"] for j in data["jobs"]] == [
        f"#{sft.pk} · sft run",
        f"#{dpo.pk} · dpo adapter",
    ]
    assert data["metrics"]["loss"] == {
        str(sft.pk): [[1, 2.0], [2, 1.5], [3, 1.2]],
        str(dpo.pk): [[1, 0.69], [2, 0.60]],
    }
    assert data["metrics"]["eval_loss"] == {str(sft.pk): [[2, 1.9]]}
    assert data["metrics"]["rewards/accuracies"] == {str(dpo.pk): [[1, 0.5], [2, 0.75]]}
    assert data["last"]["loss"] == {str(sft.pk): 1.2, str(dpo.pk): 0.60}


def test_the_picker_lists_fine_tunes_of_every_kind_and_checks_the_chosen(
    client, project, people, runs
):
    response = _get(client, people["viewer"], project, [("jobs", runs["sft"].pk)])

    page = response.content.decode()
    offered = re.findall(r'name="jobs" value="(\d+)"', page)
    assert sorted(map(int, offered)) == sorted([runs["sft"].pk, runs["dpo"].pk])
    assert re.search(rf'value="{runs["sft"].pk}" id="[^"]+" checked', page)
    assert not re.search(rf'value="{runs["dpo"].pk}" id="[^"]+" checked', page)


def test_checkboxes_submitted_one_by_one_compare_the_same(client, project, people, runs):
    sft, dpo = runs["sft"], runs["dpo"]

    data = _data(_get(client, people["viewer"], project, [("jobs", sft.pk), ("jobs", dpo.pk)]))

    assert [j["id"] for j in data["jobs"]] == [sft.pk, dpo.pk]


def test_a_job_of_another_project_is_not_found(client, project, people, runs):
    theirs = _job(Project.objects.create(name="Elsewhere"), "finetune.lora", [(1, {"loss": 9.0})])

    response = _get(client, people["viewer"], project, {"jobs": f"{runs['sft'].pk},{theirs.pk}"})

    assert response.status_code == 404
    assert b"9.0" not in response.content


@pytest.mark.parametrize("ids", ["textgen", "999999", "abc", "9" * 30])
def test_a_job_that_is_no_fine_tune_of_this_project_is_not_found(
    client, project, people, runs, ids
):
    value = str(runs["textgen"].pk) if ids == "textgen" else ids

    assert _get(client, people["viewer"], project, {"jobs": value}).status_code == 404


def test_a_non_member_gets_404(client, project, people, runs):
    response = _get(client, people["outsider"], project, {"jobs": runs["sft"].pk})

    assert response.status_code == 404


def test_without_a_choice_the_page_lists_runs_and_draws_nothing(client, project, people, runs):
    response = _get(client, people["viewer"], project, {})

    assert response.status_code == 200
    assert b'id="cmp-data"' not in response.content and b'id="cmp-runs"' in response.content


def test_the_last_values_table_keeps_small_numbers_readable(client, project, people):
    job = _job(
        project, "finetune.lora", [(1, {"learning_rate": 0.0002}), (2, {"learning_rate": 1e-4})]
    )

    page = _get(client, people["viewer"], project, {"jobs": job.pk}).content.decode()

    row = page[page.index('<tr data-metric="learning_rate"') :]
    assert ">0.0001<" in row[: row.index("</tr>")]
