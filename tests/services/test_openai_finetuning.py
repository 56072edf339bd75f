"""/v1/files, /v1/fine_tuning/jobs and /v1/models as a script with an Atelier token meets them:
OpenAI's object shapes and status names, and the refusals (with the parameter at fault) that the
official client turns into its exceptions. The live round trip with the `openai` package is
tests/integration/test_openai_client_live.py."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.api.openai_compat import naming
from apps.api.tokens import token_create, token_revoke
from apps.datasets.models import Approval, DatasetVersion
from apps.datasets.services import dataset_import
from apps.jobs.models import EventKind, Job
from apps.jobs.services import job_append_events
from apps.jobs.states import JobState
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from apps.projects.models import Membership, Project
from apps.quotas.models import PlatformPolicy
from apps.quotas.services import forget_policy
from tests.factories import job_succeed
from workers.tasks.runtime import execute_job

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "You add numbers."},
            {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"{a + b}"},
        ]
    }
    for a in range(1, 4)
    for b in range(1, 3)
]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


@pytest.fixture(autouse=True)
def _own_folders(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"


@pytest.fixture
def tiny(db):
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


@pytest.fixture
def tokens(project, people) -> dict[str, str]:
    """A raw token per member persona, working in `project`."""
    return {
        role: token_create(user=people[role], name=role, project_id=project.pk)[1]
        for role in ("admin", "member", "reviewer", "viewer")
    }


class Api:
    """The Django test client with a Bearer token, at /v1/."""

    def __init__(self, client, token: str):
        self.client, self.auth = client, {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def get(self, path: str, **query):
        return self.client.get(f"/v1/{path}", query, **self.auth)

    def post(self, path: str, body: dict | None = None):
        return self.client.post(
            f"/v1/{path}", json.dumps(body or {}), content_type="application/json", **self.auth
        )

    def upload(self, name: str, content: bytes, purpose: str = "fine-tune"):
        return self.client.post(
            "/v1/files",
            {"file": SimpleUploadedFile(name, content), "purpose": purpose},
            **self.auth,
        )

    def delete(self, path: str):
        return self.client.delete(f"/v1/{path}", **self.auth)


@pytest.fixture
def api(client, tokens):
    return lambda persona="member": Api(client, tokens[persona])


def imported(api, name="sums.jsonl", content: bytes | None = None) -> dict:
    """Upload a file and run its import job here, as a worker would; the file afterwards."""
    response = api().upload(name, jsonl(CHAT) if content is None else content)
    assert response.status_code == 200, response.content
    file_id = response.json()["id"]
    execute_job(int(file_id.removeprefix("file-")), worker_id="test")
    return api().get(f"files/{file_id}").json()


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json()["error"]


# --------------------------------------------------------------------------- files


@pytest.mark.django_db(transaction=True)
def test_an_upload_answers_at_once_as_uploaded_and_is_processed_by_its_import_job(api, project):
    response = api().upload("sums.jsonl", jsonl(CHAT))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "file" and body["purpose"] == "fine-tune"
    assert body["status"] == "uploaded" and body["filename"] == "sums.jsonl"
    assert body["bytes"] == len(jsonl(CHAT)) and body["id"].startswith("file-")
    job = Job.objects.get(pk=int(body["id"].removeprefix("file-")))
    assert job.kind == "dataset.import" and job.project == project

    execute_job(job.pk, worker_id="test")
    done = api().get(f"files/{body['id']}").json()

    assert done["status"] == "processed" and done["rows"] == len(CHAT)
    version = DatasetVersion.objects.get(dataset_id=done["dataset_id"], number=1)
    assert version.dataset.schema == "chat" and version.dataset.project == project
    assert version.dataset.license == "LicenseRef-Proprietary"
    assert "API" in version.dataset.source and version.approval == Approval.PENDING
    listed = api("viewer").get("files").json()
    assert listed["object"] == "list" and [f["id"] for f in listed["data"]] == [body["id"]]
    assert listed["has_more"] is False
    content = api("viewer").get(f"files/{body['id']}/content")
    assert content.status_code == 200
    rows = [json.loads(line) for line in b"".join(content.streaming_content).splitlines()]
    assert rows[0]["messages"][1] == {"role": "user", "content": "What is 1 plus 1?"}


@pytest.mark.django_db(transaction=True)
def test_a_refused_file_is_an_error_whose_details_name_the_lines(api):
    bad = jsonl(CHAT[:2]) + b'{"messages": "oops"}\nnot json\n'

    file = imported(api, "bad.jsonl", bad)

    assert file["status"] == "error"
    assert "line 3" in file["status_details"] and "line 4" in file["status_details"]
    assert [e["line"] for e in file["errors"]] == [3, 4]
    assert not DatasetVersion.objects.exists()
    error = error_of(api().get(f"files/{file['id']}/content"), 400)
    assert error["code"] == "file_not_processed"


@pytest.mark.django_db(transaction=True)
def test_prompt_completion_rows_and_openai_dpo_rows_are_read_as_atelier_schemas(api):
    qa = imported(api, "pc.jsonl", jsonl([{"prompt": "2+2?", "completion": "4"}] * 2))
    dpo_rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"Greet me {i}"}]},
            "preferred_output": [{"role": "assistant", "content": "Hello!"}],
            "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
        }
        for i in range(3)
    ]
    dpo = imported(api, "dpo.jsonl", jsonl(dpo_rows))

    assert qa["status"] == "processed" and dpo["status"] == "processed", dpo
    schemas = {
        f["id"]: DatasetVersion.objects.get(dataset_id=f["dataset_id"]).dataset.schema
        for f in (qa, dpo)
    }
    assert schemas == {qa["id"]: "qa", dpo["id"]: "preference"}


def test_a_file_for_another_purpose_or_unreadable_is_refused_on_its_parameter(api):
    assert error_of(api().upload("a.jsonl", jsonl(CHAT), "batch"), 400)["param"] == "purpose"
    error = error_of(api().upload("empty.jsonl", b""), 400)
    assert error["param"] == "file" and error["code"] == "invalid_file"
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_files_cannot_be_deleted_and_viewers_cannot_upload(api):
    file = imported(api)

    error = error_of(api().delete(f"files/{file['id']}"), 409)
    assert error["code"] == "file_not_deletable" and "immutable" in error["message"]
    assert api().get(f"files/{file['id']}").json()["status"] == "processed"
    assert error_of(api("viewer").upload("a.jsonl", jsonl(CHAT)), 403)["type"] == "permission_error"
    assert error_of(api().get("files/file-999999"), 404)["type"] == "not_found_error"


# --------------------------------------------------------------------------- fine-tuning jobs


@pytest.fixture
def training_file(project, people, tiny, tmp_path) -> dict:
    """An approved chat version made by the datasets' own import (no import job: its file id
    is file-v<version id>), so these tests need no worker thread."""
    path = tmp_path / "sums.jsonl"
    path.write_bytes(jsonl(CHAT))
    version, _ = dataset_import(
        project=project,
        actor=people["member"],
        upload_path=path,
        filename=path.name,
        name="Sums",
        license="CC0-1.0",
        source="tests",
    )
    DatasetVersion.objects.filter(pk=version.pk).update(approval=Approval.APPROVED)
    return {"id": f"file-v{version.pk}"}


def create(api, training_file, persona="member", **body):
    return api(persona).post(
        "fine_tuning/jobs", {"model": "tiny-llama", "training_file": training_file["id"], **body}
    )


def test_a_fine_tune_is_a_lora_job_with_openais_hyperparameters_mapped(api, training_file):
    response = create(
        api,
        training_file,
        suffix="adder",
        seed=3,
        hyperparameters={"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 0.5},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    job = Job.objects.get(pk=int(body["id"].removeprefix("ftjob-")))
    assert job.kind == "finetune.lora"
    assert job.params["num_train_epochs"] == 2.0 and job.params["max_steps"] == -1
    assert job.params["per_device_train_batch_size"] == 8
    assert job.params["gradient_accumulation_steps"] == 1
    assert job.params["learning_rate"] == pytest.approx(1e-4)
    assert job.params["seed"] == 3 and job.params["name"] == "adder"
    assert body["object"] == "fine_tuning.job" and body["status"] == "queued"
    assert body["model"] == "tiny-llama" and body["training_file"] == training_file["id"]
    assert body["hyperparameters"] == {
        "n_epochs": 2,
        "batch_size": 8,
        "learning_rate_multiplier": 0.5,
    }
    assert body["method"]["type"] == "supervised" and body["fine_tuned_model"] is None
    assert body["seed"] == 3 and body["result_files"] == []


def test_method_hyperparameters_and_atelier_recipe_fields_are_accepted(api, training_file):
    response = create(
        api,
        training_file,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "auto"}}},
        hyperparameters={"max_steps": 4, "logging_steps": 1},
    )

    assert response.status_code == 200, response.content
    job = Job.objects.get(kind="finetune.lora")
    assert job.params["max_steps"] == 4 and job.params["logging_steps"] == 1
    assert response.json()["hyperparameters"]["n_epochs"] == 3  # the recipe's default


def test_an_unknown_model_is_a_404_on_model(api, training_file):
    error = error_of(create(api, training_file, model="gpt-4o-mini"), 404)

    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert not Job.objects.filter(kind="finetune.lora").exists()


@pytest.mark.django_db(transaction=True)
def test_bad_training_files_are_400s_on_training_file(api, training_file, people, project):
    unknown = error_of(create(api, {"id": "file-424242"}), 400)
    pending = api().upload("more.jsonl", jsonl(CHAT[:3])).json()  # not imported yet
    not_ready = error_of(create(api, pending), 400)
    unapproved = imported(api, "other.jsonl", jsonl(CHAT[:4]))
    gate = error_of(create(api, unapproved), 400)
    refused = imported(api, "bad.jsonl", jsonl(CHAT[:1]) + b'{"messages": "oops"}\n')
    failed = error_of(create(api, refused), 400)

    assert unknown["param"] == not_ready["param"] == gate["param"] == "training_file"
    assert failed["param"] == "training_file" and failed["code"] == "invalid_file"
    assert not_ready["code"] == "file_not_ready"
    assert "approved" in gate["message"]
    assert not Job.objects.filter(kind="finetune.lora").exists()


PAIRS = [
    {"prompt": f"Greet guest {i}.", "chosen": "Hello, welcome!", "rejected": "Go away."}
    for i in range(6)
]


@pytest.fixture
def preference_file(project, people, tiny, tmp_path) -> dict:
    """An approved preference version (prompt, chosen, rejected), as training_file is made."""
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(jsonl(PAIRS))
    version, _ = dataset_import(
        project=project,
        actor=people["member"],
        upload_path=path,
        filename=path.name,
        name="Greetings",
        license="CC0-1.0",
        source="tests",
    )
    assert version.dataset.schema == "preference"
    DatasetVersion.objects.filter(pk=version.pk).update(approval=Approval.APPROVED)
    return {"id": f"file-v{version.pk}"}


def test_dpo_is_a_dpo_job_with_beta_and_openais_hyperparameters(api, preference_file):
    dpo = {"hyperparameters": {"beta": 0.3, "n_epochs": 2, "learning_rate_multiplier": 2}}
    response = create(api, preference_file, suffix="polite", method={"type": "dpo", "dpo": dpo})

    assert response.status_code == 200, response.content
    body = response.json()
    job = Job.objects.get(pk=int(body["id"].removeprefix("ftjob-")))
    assert job.kind == "finetune.dpo" and job.params["beta"] == 0.3
    assert job.params["num_train_epochs"] == 2.0 and job.params["max_steps"] == -1
    assert job.params["learning_rate"] == pytest.approx(1e-4)  # 2 x the DPO recipe's 5e-5
    assert job.params["parent_adapter_id"] is None
    assert body["method"] == {
        "type": "dpo",
        "dpo": {
            "hyperparameters": {
                "n_epochs": 2,
                "batch_size": 16,
                "learning_rate_multiplier": 2.0,
                "beta": 0.3,
            }
        },
    }
    assert body["hyperparameters"]["n_epochs"] == 2 and "beta" not in body["hyperparameters"]
    # Listed and retrieved with the supervised jobs.
    assert [j["id"] for j in api().get("fine_tuning/jobs").json()["data"]] == [body["id"]]
    assert api().get(f"fine_tuning/jobs/{body['id']}").json()["method"]["type"] == "dpo"


def test_dpo_from_a_fine_tuned_model_trains_that_adapter_further(
    api, training_file, preference_file, tiny
):
    sft_job, adapter = succeeded(api, training_file, tiny)

    response = create(
        api, preference_file, model=f"ft:tiny-llama:adder:{sft_job.pk}", method={"type": "dpo"}
    )

    assert response.status_code == 200, response.content
    job = Job.objects.get(kind="finetune.dpo")
    assert job.params["parent_adapter_id"] == adapter.pk
    assert job.params["base_model_id"] == tiny.pk and job.params["beta"] == 0.1
    assert response.json()["model"] == "tiny-llama"


def test_dpo_refuses_non_preference_files_and_bad_beta_on_their_parameters(
    api, training_file, preference_file
):
    chat = error_of(create(api, training_file, method={"type": "dpo"}), 400)
    beta = error_of(
        create(
            api, preference_file, method={"type": "dpo", "dpo": {"hyperparameters": {"beta": -1}}}
        ),
        400,
    )
    other = error_of(create(api, preference_file, method={"type": "reinforcement"}), 400)

    assert chat["param"] == "training_file" and "preference" in chat["message"]
    assert beta["param"] == "hyperparameters.beta"
    assert other["param"] == "method.type" and other["code"] == "unsupported_method"
    assert not Job.objects.filter(kind="finetune.dpo").exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"hyperparameters": {"warp_factor": 9}}, "hyperparameters.warp_factor"),
        ({"hyperparameters": {"n_epochs": -1}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"batch_size": 2.5}}, "hyperparameters.batch_size"),
        (
            {"hyperparameters": {"learning_rate_multiplier": 10_000}},
            "hyperparameters.learning_rate_multiplier",
        ),
        ({"hyperparameters": {"r": 0}}, "hyperparameters.r"),
        ({"validation_file": "file-1"}, "validation_file"),
        ({"suffix": "my bot:v2"}, "suffix"),
        ({"method": {"type": "reinforcement"}}, "method.type"),
    ],
)
def test_bad_parameters_are_400s_naming_the_parameter(api, training_file, body, param):
    assert error_of(create(api, training_file, **body), 400)["param"] == param
    assert not Job.objects.filter(kind="finetune.lora").exists()


def test_a_fine_tune_over_the_step_budget_is_refused_on_its_epochs(api, training_file):
    error = error_of(
        create(
            api,
            training_file,
            hyperparameters={"n_epochs": 1000, "batch_size": 1, "max_seq_length": 65536},
        ),
        400,
    )

    assert error["code"] == "budget_exceeded" and error["param"] == "hyperparameters.n_epochs"


def test_a_user_at_their_cap_of_active_jobs_gets_429_with_retry_after(api, training_file):
    PlatformPolicy.objects.update_or_create(
        pk=PlatformPolicy.current().pk, defaults={"user_active_jobs": 1}
    )
    forget_policy()
    assert create(api, training_file).status_code == 200

    response = create(api, training_file)

    assert error_of(response, 429)["type"] == "rate_limit_error"
    assert int(response["Retry-After"]) > 0
    forget_policy()


def test_viewers_cannot_start_or_cancel_but_can_read(api, training_file):
    assert error_of(create(api, training_file, persona="viewer"), 403)["code"] == "forbidden"
    job_id = create(api, training_file).json()["id"]

    assert error_of(api("viewer").post(f"fine_tuning/jobs/{job_id}/cancel"), 403)
    assert api("viewer").get(f"fine_tuning/jobs/{job_id}").json()["status"] == "queued"
    assert [j["id"] for j in api("viewer").get("fine_tuning/jobs").json()["data"]] == [job_id]


def test_a_token_of_someone_who_left_the_project_or_of_another_project_gets_404(
    api, training_file, people, project, client, make_user
):
    job_id = create(api, training_file).json()["id"]
    stranger = make_user("stranger")
    elsewhere = Project.objects.create(name="Elsewhere")
    Membership.objects.create(project=elsewhere, user=stranger, role="admin")
    foreign = Api(client, token_create(user=stranger, name="s", project_id=elsewhere.pk)[1])
    leaver = Api(client, token_create(user=people["member"], name="x", project_id=project.pk)[1])
    Membership.objects.filter(project=project, user=people["member"]).delete()

    for caller in (foreign, leaver):
        assert error_of(caller.get(f"fine_tuning/jobs/{job_id}"), 404)
        assert error_of(caller.post(f"fine_tuning/jobs/{job_id}/cancel"), 404)
        assert error_of(caller.get(f"files/{training_file['id']}"), 404)
    assert foreign.get("fine_tuning/jobs").json()["data"] == []
    assert Job.objects.get(pk=int(job_id.removeprefix("ftjob-"))).state == JobState.QUEUED


def test_a_revoked_token_gets_401_invalid_api_key(client, people, project):
    row, raw = token_create(user=people["member"], name="old", project_id=project.pk)
    token_revoke(user=people["member"], token_id=row.pk)

    for path in ("files", "fine_tuning/jobs", "models"):
        error = error_of(Api(client, raw).get(path), 401)
        assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
    assert error_of(client.get("/v1/models"), 401)["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (JobState.QUEUED, "queued"),
        (JobState.RUNNING, "running"),
        (JobState.CANCELLING, "cancelled"),
        (JobState.CANCELLED, "cancelled"),
        (JobState.FAILED, "failed"),
    ],
)
def test_job_states_have_openais_status_names(api, training_file, state, status):
    job_id = create(api, training_file).json()["id"]
    Job.objects.filter(pk=int(job_id.removeprefix("ftjob-"))).update(
        state=state, error="out of memory" if state == JobState.FAILED else ""
    )

    body = api().get(f"fine_tuning/jobs/{job_id}").json()

    assert body["status"] == status and body["fine_tuned_model"] is None
    if status == "failed":
        assert body["error"] == {"code": "job_failed", "message": "out of memory", "param": None}
    else:
        assert body["error"] is None


def succeeded(api, training_file, tiny, suffix="adder") -> tuple[Job, Adapter]:
    """A fine-tune run to success by hand, as its worker would have finished it."""
    job_id = create(api, training_file, suffix=suffix).json()["id"]
    job = Job.objects.get(pk=int(job_id.removeprefix("ftjob-")))
    adapter = Adapter.objects.create(
        project=job.project,
        name=suffix,
        base_model=tiny,
        job=job,
        storage_path=f"adapters/{job.project_id}/{job.pk}/adapter",
        metrics={"eval_loss_after": 1.25, "train_loss": 1.5},
    )
    job_succeed(
        job,
        events=[
            (EventKind.LOG, {"message": "training", "level": "info"}),
            (EventKind.METRICS, {"step": 1, "total": 2, "values": {"loss": 2.0}}),
            (EventKind.PROGRESS, {"fraction": 0.5}),
            (EventKind.TEXT, {"index": 0, "delta": "secret sample"}),
            (EventKind.LOG, {"message": "boom", "level": "error", "traceback": "/srv/x.py"}),
            (EventKind.METRICS, {"step": 2, "total": 2, "values": {"loss": 1.0}}),
        ],
        result={"adapter_id": adapter.pk, "global_step": 2, "metrics": {"train_tokens": 321}},
    )
    return job, adapter


def test_a_succeeded_job_names_its_model_tokens_and_checkpoint(api, training_file, tiny, project):
    job, adapter = succeeded(api, training_file, tiny)
    model_id = f"ft:tiny-llama:adder:{job.pk}"

    body = api().get(f"fine_tuning/jobs/ftjob-{job.pk}").json()
    checkpoints = api().get(f"fine_tuning/jobs/ftjob-{job.pk}/checkpoints").json()

    assert body["status"] == "succeeded" and body["fine_tuned_model"] == model_id
    assert body["trained_tokens"] == 321 and body["finished_at"] >= body["created_at"]
    assert [c["fine_tuned_model_checkpoint"] for c in checkpoints["data"]] == [model_id]
    checkpoint = checkpoints["data"][0]
    assert checkpoint["step_number"] == 2 and checkpoint["fine_tuning_job_id"] == body["id"]
    assert (
        checkpoint["metrics"]["valid_loss"] == 1.25 and checkpoint["metrics"]["train_loss"] == 1.5
    )
    models = api("viewer").get("models").json()["data"]
    ft = next(m for m in models if m["id"] == model_id)
    assert ft["owned_by"] == project.name and ft["parent"] == "tiny-llama"
    assert {"tiny-llama", "tiny-sd", "digits-demo"} <= {m["id"] for m in models}
    assert next(m for m in models if m["id"] == "tiny-sd")["owned_by"] == "atelier"
    assert api().get(f"models/{model_id}").json()["id"] == model_id
    assert api().get(f"models/ft:tiny-llama:renamed:{job.pk}").json()["id"] == model_id
    assert error_of(api().get(f"models/ft:tiny-sd:adder:{job.pk}"), 404)["param"] == "model"


def test_model_ids_resolve_to_the_base_and_adapter_within_the_project_only(
    api, training_file, tiny, project, make_user
):
    from apps.projects.selectors import ProjectAccess

    job, adapter = succeeded(api, training_file, tiny)
    here = ProjectAccess(project=project, role="viewer")
    elsewhere = ProjectAccess(project=Project.objects.create(name="Else"), role="admin")

    assert naming.resolve_model(here, "tiny-llama") == (tiny, None)
    assert naming.resolve_model(here, f"ft:tiny-llama:adder:{job.pk}") == (tiny, adapter)
    with pytest.raises(naming.ModelNotFound):
        naming.resolve_model(elsewhere, f"ft:tiny-llama:adder:{job.pk}")
    with pytest.raises(naming.ApiError) as refused:
        naming.resolve_model(here, "tiny-sd", kind="text")
    assert refused.value.status == 400 and refused.value.param == "model"
    BaseModel.objects.filter(pk=tiny.pk).update(enabled=False)
    with pytest.raises(naming.ModelNotFound):
        naming.resolve_model(here, "tiny-llama")


def test_a_fine_tuned_model_cannot_be_the_base_of_a_new_fine_tune(api, training_file, tiny):
    job, _ = succeeded(api, training_file, tiny)

    error = error_of(create(api, training_file, model=f"ft:tiny-llama:adder:{job.pk}"), 400)

    assert error["param"] == "model" and "tiny-llama" in error["message"]


def test_events_are_newest_first_page_with_after_and_hide_tracebacks_and_content(
    api, training_file, tiny
):
    job, _ = succeeded(api, training_file, tiny)
    url = f"fine_tuning/jobs/ftjob-{job.pk}/events"

    everything = api().get(url, limit=100).json()["data"]
    first = api().get(url, limit=3).json()
    rest = api().get(url, limit=100, after=first["data"][-1]["id"]).json()

    assert first["has_more"] is True and rest["has_more"] is False
    assert first["data"] + rest["data"] == everything
    seqs = [int(e["id"].rsplit("-", 1)[1]) for e in everything]
    assert seqs == sorted(seqs, reverse=True)
    messages = [e["message"] for e in everything]
    assert messages[0] == "The job has successfully completed"
    assert messages[-1] == "Fine-tuning job queued"
    metrics = [e for e in everything if e["type"] == "metrics"]
    assert [m["data"]["train_loss"] for m in metrics] == [1.0, 2.0]
    assert all(e["object"] == "fine_tuning.job.event" for e in everything)
    assert next(e for e in everything if e["message"] == "boom")["level"] == "error"
    dumped = json.dumps(everything)
    assert "secret sample" not in dumped and "/srv/x.py" not in dumped and "fraction" not in dumped
    assert error_of(api().get(url, after=f"ftevent-{job.pk + 1}-1"), 400)["param"] == "after"


def test_cancel_stops_a_queued_job_once(api, training_file):
    job_id = create(api, training_file).json()["id"]

    body = api("admin").post(f"fine_tuning/jobs/{job_id}/cancel").json()
    again = api().post(f"fine_tuning/jobs/{job_id}/cancel")

    assert body["status"] == "cancelled"
    assert Job.objects.get(pk=int(job_id.removeprefix("ftjob-"))).state == JobState.CANCELLED
    assert error_of(again, 409)["param"] == "fine_tuning_job_id"


def test_jobs_page_with_after_newest_first(api, training_file):
    ids = [create(api, training_file).json()["id"] for _ in range(3)]

    first = api().get("fine_tuning/jobs", limit=2).json()
    rest = api().get("fine_tuning/jobs", limit=2, after=first["data"][-1]["id"]).json()

    assert [j["id"] for j in first["data"] + rest["data"]] == ids[::-1]
    assert first["has_more"] is True and rest["has_more"] is False


def test_other_job_kinds_are_not_fine_tuning_jobs(api, project, people):
    other = Job.objects.create(project=project, kind="test.steps", queue="cpu", params={})
    job_append_events(job_id=other.pk, events=[(EventKind.LOG, {"message": "x"})])

    assert error_of(api().get(f"fine_tuning/jobs/ftjob-{other.pk}"), 404)
    assert error_of(api().get(f"fine_tuning/jobs/{other.pk}"), 404)


def test_a_browser_session_alone_cannot_use_v1(client, people):
    client.force_login(people["admin"])

    for path in ("files", "fine_tuning/jobs", "models"):
        assert error_of(client.get(f"/v1/{path}"), 401)["type"] == "authentication_error"


JUNK = ("abc", "-1", "99999999999999999999", "1.5", "%00", "x" * 3000, " 1 ", "ft:::", "file-v")
ID_ROUTES = [
    "files/{}",
    "files/{}/content",
    "fine_tuning/jobs/{}",
    "fine_tuning/jobs/{}/events",
    "fine_tuning/jobs/{}/checkpoints",
    "models/{}",
]


def test_junk_ids_queries_and_bodies_get_an_error_never_a_5xx(api, training_file):
    """What the route fuzzer (tests/test_fuzz_routes.py, with a session) cannot reach: the /v1/
    parsing behind the token."""
    admin = api("admin")
    job_id = create(api, training_file).json()["id"]
    for junk in JUNK:
        calls = [admin.get(path.format(junk)) for path in ID_ROUTES]
        calls.append(admin.post(f"fine_tuning/jobs/{junk}/cancel"))
        calls.append(admin.delete(f"files/{junk}"))
        calls.append(admin.post("fine_tuning/jobs", {"model": junk, "training_file": junk}))
        calls.append(
            admin.post(
                "fine_tuning/jobs",
                {"model": "tiny-llama", "training_file": training_file["id"], "seed": [junk]},
            )
        )
        for response in calls:
            assert 400 <= response.status_code < 500, response.content[:300]
            assert "error" in response.json()
        for path in ("files", "fine_tuning/jobs", f"fine_tuning/jobs/{job_id}/events"):
            for query in ("after", "limit", "order"):  # fine_tuning/jobs reads no `order`
                response = admin.get(path, **{query: junk})
                assert response.status_code in (200, 400), response.content[:300]
                assert ("error" in response.json()) == (response.status_code == 400)
    for junk in (junk for junk in JUNK if junk.strip()):
        hyper = {
            "model": "tiny-llama",
            "training_file": training_file["id"],
            "hyperparameters": {junk: 1},
        }
        assert error_of(admin.post("fine_tuning/jobs", hyper), 400)["param"].startswith(
            "hyperparameters"
        )


def test_base_model_ids_are_built_in_keys_or_unique_slugs(tiny):
    clash = BaseModel.objects.create(name="Tiny-Llama", source="folder", reference="/m/a")
    mine = BaseModel.objects.create(name="My Llama 3B (v2)", source="folder", reference="/m/b")

    ids = naming.base_ids()

    assert ids[tiny.pk] == "tiny-llama"  # built-ins keep their documented key
    assert ids[clash.pk] == f"tiny-llama-{clash.pk}" and ids[mine.pk] == "my-llama-3b-v2"
    assert len(set(ids.values())) == len(ids)
