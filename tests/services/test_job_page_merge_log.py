"""A merge-and-export job says what it does while it runs (loading, merging, saving, sizes), and
its page links the merged model by its role (issue 19, item 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from apps.jobs import services as job_services
from apps.jobs.models import EventKind, Job, JobEvent
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows, model_folder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def adapter(project, people) -> Adapter:
    """A LoRA on the built-in tiny Llama, saved by PEFT where a fine-tune publishes one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    ensure_builtin_rows()
    base = BaseModel.objects.get(reference="tiny-llama")
    rel = Path("adapters") / str(project.pk) / "52" / "adapter"
    model = AutoModelForCausalLM.from_pretrained(model_folder(base))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    get_peft_model(model, config).save_pretrained(Path(settings.MEDIA_ROOT) / rel)
    return Adapter.objects.create(
        project=project,
        name="sums-lora",
        base_model=base,
        storage_path=str(rel),
        created_by=people["member"],
    )


def test_a_merge_job_logs_each_stage_with_sizes_and_links_the_merged_model(
    client, project, people, adapter
):
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(
        project=project,
        kind="adapter.merge",
        params={"adapter_id": adapter.pk},
        created_by=people["member"],
    )
    assert execute_job(job.pk, worker_id="test") == "succeeded", Job.objects.get(pk=job.pk).error

    lines = [
        e.data["message"]
        for e in JobEvent.objects.filter(job_id=job.pk, kind=EventKind.LOG).order_by("seq")
    ]
    text = "\n".join(lines)
    assert "merging adapter sums-lora into" in text
    assert "loading the base model" in text
    assert re.search(r"loaded [\d,]+ parameters", text)
    assert re.search(r"adapter: [\d,]+ LoRA parameters; merging them in", text)
    assert re.search(r"wrote model\.safetensors \([\d.]+ (KB|MB|GB)\); folder [\d.]+ (KB|MB)", text)
    assert re.search(r"merged\.zip: [\d.]+ (KB|MB|GB)", text)

    client.force_login(people["viewer"])
    html = client.get(reverse("jobs:detail", args=[project.pk, job.pk])).content.decode()
    link = re.search(
        r'<a class="name" href="([^"]+)" title="merged-model\.zip" download>([^<]+)</a>', html
    )
    assert link is not None and link.group(2) == "Merged model (zip)"
    download = client.get(link.group(1))
    assert download.status_code == 200
    assert b"".join(download.streaming_content)[:2] == b"PK"
