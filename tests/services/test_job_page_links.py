"""The job page names what a job made and links it: artifacts by their role, linked to the
download views that check the reader's access; the dataset version a redaction or dedup made;
progress in the unit of the work (issue 19, item 2)."""

from __future__ import annotations

import csv
import io
import re
from html import unescape
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from apps.datasets import services as dataset_services
from apps.jobs import services as job_services
from apps.jobs.models import EventKind, Job, JobEvent
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from tests import factories


def page(client, user, job: Job) -> str:
    client.force_login(user)
    response = client.get(reverse("jobs:detail", args=[job.project_id, job.pk]))
    assert response.status_code == 200
    return response.content.decode()


def artifact_entries(html: str) -> list[dict[str, str]]:
    """Each listed artifact: its label, the file name in its title, and its link (or "")."""
    found = []
    for item in re.findall(r'<li data-name="[^"]*">(.*?)</li>', html, re.S):
        tag = re.search(r'<(a|span) class="name"([^>]*)>([^<]*)</\1>', item)
        assert tag is not None, item
        href = re.search(r'href="([^"]*)"', tag.group(2))
        title = re.search(r'title="([^"]*)"', tag.group(2))
        found.append(
            {
                "label": unescape(tag.group(3)),
                "title": unescape(title.group(1)) if title else "",
                "href": unescape(href.group(1)) if href else "",
            }
        )
    return found


def artifact(name: str, size: int = 22) -> tuple[str, dict]:
    return (EventKind.ARTIFACT, {"name": name, "url": None, "size": size})


@pytest.fixture
def adapter(project, people) -> Adapter:
    ensure_builtin_rows()
    folder = Path(settings.MEDIA_ROOT) / "adapters" / str(project.pk) / "41"
    (folder / "adapter").mkdir(parents=True, exist_ok=True)
    (folder / "adapter.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    (folder / "merged.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return Adapter.objects.create(
        project=project,
        name="qa-lora",
        base_model=BaseModel.objects.get(reference="tiny-llama"),
        storage_path=f"adapters/{project.pk}/41/adapter",
        merged_path=f"adapters/{project.pk}/41/merged",
        created_by=people["member"],
    )


def test_a_viewer_downloads_the_adapter_and_merged_model_from_links_named_by_their_role(
    client, project, people, adapter
):
    job = factories.make_job(project, people["member"])
    factories.job_succeed(
        job,
        events=[artifact("adapter.zip"), artifact("merged-model.zip")],
        result={"adapter_id": adapter.pk},
    )

    entries = artifact_entries(page(client, people["viewer"], job))

    assert [(e["label"], e["title"]) for e in entries] == [
        ("Adapter (zip)", "adapter.zip"),
        ("Merged model (zip)", "merged-model.zip"),
    ]
    for entry in entries:
        download = client.get(entry["href"])
        assert download.status_code == 200
        assert b"".join(download.streaming_content).startswith(b"PK")


def png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_output(project, author, job, *, moderation: str):
    output = factories.make_output(project, author, job=job, kind="image", moderation=moderation)
    rel = f"outputs/{project.pk}/{output.sha256}.png"
    path = Path(settings.MEDIA_ROOT) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes())
    type(output).objects.filter(pk=output.pk).update(file_path=rel, thumb_path=rel)
    return output


def test_images_are_numbered_and_linked_only_for_readers_who_may_see_them(client, project, people):
    member = people["member"]
    job = factories.make_job(project, member)
    clean = image_output(project, member, job, moderation="clean")
    flagged = image_output(project, member, job, moderation="flagged")
    factories.job_succeed(
        job,
        events=[artifact(f"{clean.sha256}.png"), artifact(f"{flagged.sha256}.png")],
        result={"outputs": [{"output_id": clean.pk}, {"output_id": flagged.pk}]},
    )

    as_author = artifact_entries(page(client, member, job))
    as_viewer = artifact_entries(page(client, people["viewer"], job))

    assert [e["label"] for e in as_author] == ["Image 1", "Image 2"]
    assert as_author[0]["title"] == f"{clean.sha256}.png"
    assert all(e["href"] for e in as_author)
    assert client.get(as_viewer[0]["href"]).status_code == 200
    # The flagged image waits for review: listed for the viewer, but not linked (its file
    # view would refuse them).
    assert [e["label"] for e in as_viewer] == ["Image 1", "Image 2"]
    assert as_viewer[0]["href"] == as_author[0]["href"] and as_viewer[1]["href"] == ""
    assert client.get(as_author[1]["href"]).status_code == 404


def test_a_file_without_a_download_view_is_listed_by_name_without_a_link(client, project, people):
    job = factories.make_job(project, people["member"])
    factories.job_succeed(job, events=[artifact("report.json", size=2048)], result={})

    html = page(client, people["member"], job)

    assert artifact_entries(html) == [{"label": "report.json", "title": "report.json", "href": ""}]
    assert "2.0\xa0KB" in html
    assert 'id="job-artifacts-empty" hidden' in html


def qa_csv(path: Path, rows: int, *, duplicate_every: int = 0) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("question", "answer"))
    for i in range(rows):
        n = i - i % duplicate_every if duplicate_every else i
        writer.writerow((f"What is {n} plus {n}?", f"{2 * n}; ask pat{n}@example.org"))
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


@pytest.fixture
def version(project, people, tmp_path):
    version, _ = dataset_services.dataset_import(
        project=project,
        actor=people["member"],
        upload_path=qa_csv(tmp_path / "qa.csv", 30, duplicate_every=3),
        filename="qa.csv",
        name="Sums",
        license="CC0-1.0",
        source="tests",
    )
    return version


def run(project, user, kind: str, **params) -> Job:
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(project=project, kind=kind, params=params, created_by=user)
    assert execute_job(job.pk, worker_id="test") == "succeeded", Job.objects.get(pk=job.pk).error
    return Job.objects.get(pk=job.pk)


def made_links(html: str) -> list[tuple[str, str]]:
    section = re.search(r'<section[^>]*id="job-made"[^>]*>(.*?)</section>', html, re.S)
    assert section is not None
    return [
        (unescape(href), unescape(text))
        for href, text in re.findall(r'<a href="([^"]*)">([^<]*)</a>', section.group(1))
    ]


@pytest.mark.django_db(transaction=True)
def test_a_redaction_job_links_the_version_it_created(client, project, people, version):
    job = run(project, people["member"], "dataset.redact", version_id=version.pk, mode="tag")

    links = made_links(page(client, people["viewer"], job))

    child = version.dataset.versions.get(number=2)
    assert links == [(child.get_absolute_url(), "Dataset version v2")]
    assert client.get(links[0][0]).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_dedup_job_that_keeps_one_row_per_group_links_its_new_version(
    client, project, people, version
):
    job = run(
        project,
        people["member"],
        "dataset.dedup",
        version_id=version.pk,
        semantic=False,
        keep_one=True,
    )

    links = made_links(page(client, people["member"], job))

    child = version.dataset.versions.get(number=2)
    assert child.rows == 10
    assert links == [(child.get_absolute_url(), "Dataset version v2")]


def test_a_job_that_made_nothing_with_a_page_shows_no_result_card(client, project, people):
    job = factories.job_succeed(factories.make_job(project, people["member"]), result={})

    html = page(client, people["member"], job)

    assert made_links(html) == []
    assert re.search(r'<section[^>]*id="job-made"[^>]*hidden', html)


def test_a_result_url_that_leaves_the_site_is_not_linked(client, project, people):
    job = factories.make_job(project, people["member"])
    factories.job_succeed(job, result={"version_url": "//evil.example/x", "version": 2})

    assert made_links(page(client, people["member"], job)) == []


@pytest.mark.django_db(transaction=True)
def test_a_30_row_pii_scan_counts_its_progress_in_rows(client, project, people, version):
    job = run(project, people["member"], "dataset.pii_scan", version_id=version.pk)

    progress = JobEvent.objects.filter(job=job, kind=EventKind.PROGRESS).order_by("seq")
    last = progress.last()
    html = page(client, people["member"], job)

    assert last is not None and (last.data["step"], last.data["total"]) == (30, 30)
    assert all(e.data["total"] == 30 for e in progress)
    assert 'data-of="row {step} of {total}"' in html


@pytest.mark.django_db(transaction=True)
def test_a_lanczos_upscale_ends_on_its_last_step_and_links_its_image(client, project, people):
    member = people["member"]
    source = image_output(project, member, None, moderation="clean")
    job = run(project, member, "image.upscale", output_id=source.pk, upscaler="lanczos", scale=2)

    last = JobEvent.objects.filter(job=job, kind=EventKind.PROGRESS).order_by("seq").last()
    entries = artifact_entries(page(client, member, job))

    assert last is not None and (last.data["step"], last.data["total"]) == (1, 1)
    assert [e["label"] for e in entries] == ["Image 1"]
    download = client.get(entries[0]["href"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content).startswith(b"\x89PNG")
