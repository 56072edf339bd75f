"""The preference jobs on the platform: the launch page's methods (SFT, DPO, reward model, GRPO),
what each kind refuses before a row exists, who may use the new routes, and a reward model
trained and used to rank the gallery's text outputs (in-process worker)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from apps.datasets.models import Approval, DatasetVersion
from apps.datasets.services import dataset_import
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Moderation, Output
from workers.tasks.runtime import execute_job

PAIRS = [
    {"prompt": f"Greet {n}.", "chosen": f" Hello {n}, welcome!", "rejected": f" Go away, {n}."}
    for n in ("Ann", "Bob", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lu")
]
TINY_RECIPE = {
    "max_steps": 16,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "warmup_steps": 0,
    "logging_steps": 4,
    "save_steps": 8,
    "learning_rate": 5e-3,
    "max_seq_length": 64,
    "eval_fraction": 0.0,
}


@pytest.fixture(autouse=True)
def _own_folders(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def tiny(db) -> BaseModel:
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


def _version(project, user, tmp_path, rows, name) -> DatasetVersion:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    version, _ = dataset_import(
        project=project,
        actor=user,
        upload_path=path,
        filename=path.name,
        name=name,
        license="CC0-1.0",
        source="tests",
    )
    DatasetVersion.objects.filter(pk=version.pk).update(approval=Approval.APPROVED)
    version.refresh_from_db()
    return version


@pytest.fixture
def prefs(project, people, tmp_path) -> DatasetVersion:
    return _version(project, people["member"], tmp_path, PAIRS, "Greetings")


@pytest.fixture
def qa(project, people, tmp_path) -> DatasetVersion:
    rows = [{"question": f"{a}+{a}?", "answer": str(2 * a)} for a in range(6)]
    return _version(project, people["member"], tmp_path, rows, "Sums")


def _adapter(project, base, kind: str, name: str) -> Adapter:
    return Adapter.objects.create(
        project=project, name=name, base_model=base, kind=kind, storage_path="adapters/x/adapter"
    )


def _version_select(page: str) -> str:
    """The dataset version <select> of a launch page (other selects hold ids too)."""
    start = page.find('id="ft-dataset_version_id"')
    return page[start : page.index("</select>", start)] if start >= 0 else ""


def _submit(project, user, kind, **params):
    return job_services.job_create(project=project, kind=kind, params=params, created_by=user)


# ------------------------------------------------------------------------------ launch page


def test_the_dpo_page_offers_preference_versions_and_sft_adapters_and_starts_a_dpo_job(
    client, project, people, tiny, prefs, qa
):
    sft = _adapter(project, tiny, "sft", "Sums SFT")
    _adapter(project, tiny, "reward", "Greeter RM")
    client.force_login(people["member"])
    url = reverse("finetunes:new", args=[project.pk])

    page = client.get(url + "?method=dpo").content.decode()

    versions = _version_select(page)
    assert f'<option value="{prefs.pk}"' in versions and f'<option value="{qa.pk}"' not in versions
    assert 'name="parent_adapter_id"' in page and "Sums SFT" in page and "Greeter RM" not in page
    for name in ("beta", "loss_type", "max_prompt_length"):
        assert f'name="{name}"' in page
    assert 'name="loss_on"' not in page and 'name="template"' not in page
    assert 'aria-current="page">DPO' in page

    response = client.post(
        url + "?method=dpo",
        {
            "method": "dpo",
            "base_model_id": tiny.pk,
            "dataset_version_id": prefs.pk,
            "parent_adapter_id": sft.pk,
            "beta": "0.25",
            "loss_type": "ipo",
        },
    )
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.kind == "finetune.dpo" and job.params["parent_adapter_id"] == sft.pk
    assert job.params["beta"] == 0.25 and job.params["loss_type"] == "ipo"


def test_each_method_lists_the_datasets_it_trains_on(client, project, people, tiny, prefs, qa):
    client.force_login(people["member"])
    url = reverse("finetunes:new", args=[project.pk])
    shown = {}
    for method in ("sft", "dpo", "reward", "grpo", "nonsense"):
        page = _version_select(client.get(f"{url}?method={method}").content.decode())
        shown[method] = {v.pk for v in (prefs, qa) if f'<option value="{v.pk}"' in page}
    assert shown == {
        "sft": {qa.pk},
        "dpo": {prefs.pk},
        "reward": {prefs.pk},
        "grpo": {prefs.pk, qa.pk},
        "nonsense": {qa.pk},  # an unknown method is the SFT form
    }
    grpo = client.get(f"{url}?method=grpo").content.decode()
    assert 'id="ft-no-reward-models"' in grpo and "?method=reward" in grpo


def test_a_refused_dpo_submit_shows_the_form_again_with_the_reason(
    client, project, people, tiny, qa
):
    client.force_login(people["member"])
    response = client.post(
        reverse("finetunes:new", args=[project.pk]) + "?method=dpo",
        {"method": "dpo", "base_model_id": tiny.pk, "dataset_version_id": qa.pk},
    )
    assert response.status_code == 400
    assert "DPO trains on preference data, not qa" in response.content.decode()
    assert not Job.objects.exists()


def test_the_estimate_accepts_every_methods_fields(client, project, people, tiny):
    client.force_login(people["member"])
    url = reverse("finetunes:estimate", args=[project.pk])
    for body in (
        {"method": "dpo", "base_model_id": tiny.pk, "beta": 0.2, "max_prompt_length": 64},
        {"method": "reward", "base_model_id": tiny.pk, "center_rewards_coefficient": 0.01},
        {"method": "grpo", "base_model_id": tiny.pk, "num_generations": 4},
    ):
        response = client.post(url, json.dumps(body), content_type="application/json")
        assert response.status_code == 200, (body, response.content)
        assert "error" not in response.json()


# ------------------------------------------------------------------------------ kind checks


def test_dpo_refuses_other_schemas_foreign_or_reward_adapters_and_another_base(
    project, people, tiny, prefs, qa
):
    from apps.projects.models import Project

    other_base = BaseModel.objects.create(name="other", kind="text", source="folder")
    member = people["member"]
    elsewhere = Project.objects.create(name="Elsewhere")
    cases = {
        "dataset_version_id": {"dataset_version_id": qa.pk},
        "parent_adapter_id": {"parent_adapter_id": _adapter(elsewhere, tiny, "sft", "x").pk},
    }
    for field, params in cases.items():
        with pytest.raises(job_services.JobParamsError) as err:
            _submit(
                project,
                member,
                "finetune.dpo",
                **{"base_model_id": tiny.pk, "dataset_version_id": prefs.pk, **params},
            )
        assert field in err.value.errors, err.value.errors
    for adapter, says in (
        (_adapter(project, tiny, "reward", "rm"), "not a"),
        (_adapter(project, other_base, "sft", "on other"), "another base model"),
    ):
        with pytest.raises(job_services.JobParamsError) as err:
            _submit(
                project,
                member,
                "finetune.dpo",
                base_model_id=tiny.pk,
                dataset_version_id=prefs.pk,
                parent_adapter_id=adapter.pk,
            )
        assert says in err.value.errors["parent_adapter_id"]
    assert not Job.objects.exists()


def test_grpo_needs_a_reward_model_and_scoring_only_visible_text_outputs(
    project, people, tiny, prefs
):
    member, admin = people["member"], people["admin"]
    sft = _adapter(project, tiny, "sft", "sft")
    with pytest.raises(job_services.JobParamsError) as err:
        _submit(
            project,
            member,
            "finetune.policy",
            base_model_id=tiny.pk,
            dataset_version_id=prefs.pk,
            reward_adapter_id=sft.pk,
        )
    assert "not a" in err.value.errors["reward_adapter_id"]

    rm = _adapter(project, tiny, "reward", "rm")
    # Someone else's flagged output is hidden from a member until a reviewer decides.
    hidden = Output.objects.create(
        project=project,
        kind="text",
        text="x",
        prompt="p",
        sha256="1" * 64,
        moderation=Moderation.FLAGGED,
        created_by=admin,
    )
    image = Output.objects.create(project=project, kind="image", sha256="2" * 64, created_by=member)
    for output in (hidden, image):
        with pytest.raises(job_services.JobParamsError) as err:
            _submit(project, member, "outputs.score", adapter_id=rm.pk, output_ids=[output.pk])
        assert "output_ids" in err.value.errors
    with pytest.raises(job_services.JobParamsError) as err:
        _submit(project, member, "outputs.score", adapter_id=sft.pk, output_ids=[hidden.pk])
    assert "not a reward model" in err.value.errors["adapter_id"]
    assert not Job.objects.exists()


# ------------------------------------------------------------------------------ authorization


def test_every_new_route_is_404_for_a_stranger_and_403_for_a_viewer(client, project, people, tiny):
    urls = [
        ("get", reverse("finetunes:new", args=[project.pk]) + "?method=dpo"),
        ("get", reverse("finetunes:new", args=[project.pk]) + "?method=reward"),
        ("get", reverse("finetunes:new", args=[project.pk]) + "?method=grpo"),
        ("post", reverse("finetunes:new", args=[project.pk]) + "?method=dpo"),
        ("post", reverse("finetunes:estimate", args=[project.pk])),
        ("post", reverse("galleries:score", args=[project.pk])),
    ]
    for persona, status in (("outsider", 404), ("viewer", 403), ("reviewer", 403)):
        client.force_login(people[persona])
        for method, url in urls:
            body = {"method": "dpo"} if method == "post" else None
            response = getattr(client, method)(url, body) if body else getattr(client, method)(url)
            assert response.status_code == status, (persona, method, url)
    assert not Job.objects.exists()


# ------------------------------------------------------------------------------ end to end


@pytest.fixture
def _one_thread():
    # Tiny matrices: OpenMP threads only add contention (100x slower on a busy 2-core machine).
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the job's events are written on their own connection
@pytest.mark.usefixtures("_one_thread")
def test_a_reward_model_is_trained_then_ranks_the_gallerys_text_outputs(
    client, project, people, tiny, prefs
):
    member = people["member"]
    job = _submit(
        project,
        member,
        "finetune.reward",
        base_model_id=tiny.pk,
        dataset_version_id=prefs.pk,
        name="Greeter RM",
        **TINY_RECIPE,
    )
    assert execute_job(job.pk, worker_id="test") == "succeeded", Job.objects.get(pk=job.pk).error
    rm = Adapter.objects.get(job=job)
    assert rm.kind == "reward" and rm.name == "Greeter RM"
    assert rm.lineage["dataset_versions"][0]["id"] == prefs.pk
    assert rm.metrics["train_reward_accuracy_last"] == 1.0

    def say(text, prompt="Greet Zed."):
        return Output.objects.create(
            project=project,
            kind="text",
            prompt=prompt,
            text=text,
            sha256=f"{Output.objects.count():064d}",
            created_by=member,
        )

    rude, polite, other = say(" Go away, Zed."), say(" Hello Zed, welcome!"), say(" Meh.")
    say("unscored", prompt="filtered out")
    client.force_login(member)
    gallery = reverse("galleries:index", args=[project.pk])

    response = client.post(
        reverse("galleries:score", args=[project.pk]), {"adapter_id": rm.pk, "q": "Zed"}
    )
    score_job = Job.objects.get(kind="outputs.score")
    assert response.status_code == 302 and response["Location"] == score_job.get_absolute_url()
    assert sorted(score_job.params["output_ids"]) == sorted([rude.pk, polite.pk, other.pk])
    assert execute_job(score_job.pk, worker_id="test") == "succeeded", score_job.error

    for o in (rude, polite):
        o.refresh_from_db()
    key = f"adapter-{rm.pk}"
    assert polite.metrics["reward"][key] > rude.metrics["reward"][key] + 1.0
    page = client.get(f"{gallery}?sort=reward-{rm.pk}")
    ranked = [o.pk for o in page.context["outputs"]]
    assert ranked[0] == polite.pk and ranked.index(rude.pk) > ranked.index(polite.pk)
    assert ranked[-1] not in (rude.pk, polite.pk, other.pk)  # unscored last
    assert "reward " in page.content.decode()
