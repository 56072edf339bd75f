"""Text model craft through the platform: the Model craft page and who may use it, and the
distillation, quantization and bias probe jobs run by the real job runtime (in-process)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.datasets import services as dataset_services
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.jobs.selectors import job_metric_series
from apps.models.models import BaseModel
from apps.models.services import ensure_builtin_rows

pytestmark = pytest.mark.django_db(transaction=True)

QA = "question,answer\n" + "".join(
    f"{a} 加 {b} 等于几?,{a} 加 {b} 等于 {a + b}。\n" for a in range(5) for b in range(5)
)
SMALL = {"max_seq_length": 64, "speed_tokens": 4}


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


@pytest.fixture
def version(project, people, tmp_path):
    path = tmp_path / "sums.csv"
    path.write_text(QA, encoding="utf-8")
    version, _ = dataset_services.dataset_import(
        project=project,
        actor=people["member"],
        upload_path=path,
        filename=path.name,
        name="Sums",
        license="CC0-1.0",
        source="tests",
        validation_fraction=0.2,
    )
    dataset_services.version_set_pii_report(version=version, report={"counts": {}})
    version.refresh_from_db()
    dataset_services.version_decide(
        version=version, actor=people["reviewer"], role="reviewer", approve=True, comment="ok"
    )
    return version


def login(client, user):
    assert client.login(username=user.username, password=f"pw-{user.username}")
    return client


def run(project, user, kind, **params) -> Job:
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(project=project, kind=kind, params=params, created_by=user)
    outcome = execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    assert outcome == "succeeded", job.error
    return job


# ------------------------------------------------------------------------------- the page


def test_a_member_sees_the_three_launch_forms(client, project, people, tiny):
    page = login(client, people["member"]).get(reverse("craft:index", args=[project.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    for form in ("distill", "quantize", "bias-probe"):
        assert f'id="craft-{form}"' in html
        assert reverse("craft:text_launch", args=[project.pk, form]) in html
    assert 'name="keep_every"' in html and 'name="method"' in html and 'name="language"' in html


def test_it_rejects_an_outsider(client, project, people):
    login(client, people["outsider"])

    assert client.get(reverse("craft:index", args=[project.pk])).status_code == 404
    launch = reverse("craft:text_launch", args=[project.pk, "quantize"])
    assert client.post(launch, {"base_model_id": 1}).status_code == 404
    assert not Job.objects.exists()


def test_a_viewer_reads_the_page_but_may_not_launch(client, project, people, tiny, version):
    login(client, people["viewer"])
    page = client.get(reverse("craft:index", args=[project.pk]))
    launch = client.post(
        reverse("craft:text_launch", args=[project.pk, "quantize"]),
        {"base_model_id": tiny.pk, "dataset_version_id": version.pk},
    )

    assert page.status_code == 200 and 'id="craft-quantize"' not in page.content.decode()
    assert launch.status_code == 403
    assert not Job.objects.exists()


def test_a_launch_with_another_projects_version_is_refused_on_the_form(
    client, project, people, tiny, version
):
    from apps.projects.models import Project

    other = Project.objects.create(name="Other")
    other.memberships.create(user=people["member"], role="member")
    response = login(client, people["member"]).post(
        reverse("craft:text_launch", args=[other.pk, "distill"]),
        {"teacher_model_id": tiny.pk, "dataset_version_id": version.pk, "student": "shrink"},
    )

    assert response.status_code == 400
    assert "No such dataset version in this project" in response.content.decode()
    assert not Job.objects.exists()


def test_a_reward_adapter_or_one_of_another_model_is_refused(project, people, tiny, version):
    with pytest.raises(job_services.JobParamsError) as info:
        job_services.job_create(
            project=project,
            kind="craft.quantize",
            created_by=people["member"],
            params={"base_model_id": tiny.pk, "adapter_id": 999, "dataset_version_id": version.pk},
        )
    assert info.value.errors == {"adapter_id": "No such adapter in this project"}


def test_a_form_post_starts_the_job_and_leads_to_its_page(client, project, people, tiny, version):
    response = login(client, people["member"]).post(
        reverse("craft:text_launch", args=[project.pk, "quantize"]),
        {
            "base_model_id": tiny.pk,
            "adapter_id": "0",
            "dataset_version_id": version.pk,
            "method": "int8-weight-only",
            "max_seq_length": "64",
        },
    )

    job = Job.objects.get(kind="craft.quantize")
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.queue == "gpu" and job.params["method"] == "int8-weight-only"


# ------------------------------------------------------------------------------- the jobs


def test_a_distilled_student_is_registered_and_answers_in_the_playground(
    client, project, people, tiny, version
):
    member = people["member"]
    job = run(
        project,
        member,
        "craft.distill",
        teacher_model_id=tiny.pk,
        dataset_version_id=version.pk,
        max_steps=4,
        save_steps=2,
        logging_steps=2,
        per_device_train_batch_size=4,
        **SMALL,
    )

    student = BaseModel.objects.get(pk=job.result["model_id"])
    tiny.refresh_from_db()  # prepared (built and inspected) by the job
    assert student.kind == "text" and student.is_ready and student.info["craft"]["job"] == job.pk
    assert student.parameters < tiny.parameters
    assert job.result["metrics"]["kl_after"] >= 0 and job.result["global_step"] == 4
    series = job_metric_series(job=job)  # what the job page charts, live
    assert [step for step, _ in series["kl"]] == [2, 4] and "loss" in series
    answer = run(
        project,
        member,
        "textgen",
        base_model_id=student.pk,
        prompt="1 加 1",
        max_new_tokens=3,
        seed=1,
    )
    assert answer.result["runs"][0]["text"] is not None
    page = login(client, member).get(reverse("craft:text_report", args=[project.pk, job.pk]))
    assert page.status_code == 200
    assert "<svg" in page.content.decode() and student.name in page.content.decode()


def test_quantization_registers_an_int8_model_with_its_report(
    client, project, people, tiny, version
):
    job = run(
        project,
        people["member"],
        "craft.quantize",
        base_model_id=tiny.pk,
        dataset_version_id=version.pk,
        speed_prompts=2,
        **SMALL,
    )

    model = BaseModel.objects.get(pk=job.result["model_id"])
    report = job.result["report"]
    assert model.is_ready and model.info["craft"]["method"] == "int8-weight-only"
    assert report["size_bytes_after"] < report["size_bytes_before"]
    assert report["perplexity_before"] > 0 and report["perplexity_after"] > 0
    assert report["top1_agreement"] >= 0.9
    page = login(client, people["viewer"]).get(
        reverse("craft:text_report", args=[project.pk, job.pk])
    )
    assert page.status_code == 200 and 'id="craft-agreement"' in page.content.decode()


def test_the_bias_probe_compares_the_base_model_with_an_adapter(
    client, project, people, tiny, version
):
    member = people["member"]
    sft = run(
        project,
        member,
        "finetune.lora",
        base_model_id=tiny.pk,
        dataset_version_id=version.pk,
        max_steps=2,
        warmup_steps=0,
        max_seq_length=64,
    )
    adapter_id = sft.result["adapter_id"]
    job = run(
        project,
        member,
        "craft.bias_probe",
        base_model_id=tiny.pk,
        adapter_ids=[adapter_id],
        language="zh",
        attributes="gender",
        max_new_tokens=4,
    )

    assert [m["name"] for m in job.result["models"]][0] == tiny.name
    assert job.result["models"][1]["adapter_id"] == adapter_id
    assert job.result["attributes"] == ["gender"] and job.result["probes"] == 6
    assert job.result["summary"]["adapter-1"]["gender"]["ll_gap"] > 0
    page = login(client, member).get(reverse("craft:text_report", args=[project.pk, job.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and html.count("<svg") >= 3 and 'id="craft-bias-table"' in html


def test_the_report_of_another_kind_or_project_is_not_found(client, project, people, make_user):
    from tests.factories import make_job

    job = make_job(project, people["member"])
    login(client, people["member"])

    assert client.get(reverse("craft:text_report", args=[project.pk, job.pk])).status_code == 404
    login(client, people["outsider"])
    assert client.get(reverse("craft:text_report", args=[project.pk, job.pk])).status_code == 404


def test_a_chart_of_measures_in_different_units_scales_each_row_to_its_own_longest_bar():
    from apps.craft.text_charts import PLOT_W, bar_chart

    rows = ["Size on disk (MiB)", "Tokens/s"]
    chart = bar_chart(
        "Original and quantized",
        rows,
        [("Original", [0.566, 333.0]), ("Quantized", [0.245, 486.0])],
        per_row_scale=True,
    )
    widths = [[bar["width"] for bar in row["bars"]] for row in chart.rows]
    # Each row's longest bar spans the plot, so 0.566 MiB is not a sliver beside 486 tokens/s.
    assert widths[0][0] == pytest.approx(PLOT_W) and widths[1][1] == pytest.approx(PLOT_W)
    assert widths[0][1] == pytest.approx(PLOT_W * 0.245 / 0.566, abs=0.01)
