"""Content Credentials for recorded images: once a batch is final, a `provenance.credentials`
job puts a signed C2PA copy beside each final image; the gallery serves it to those who may see
the output. Rows are built by hand (no chain): the job reads only the database and the files."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.services import JobParamsError, job_create
from apps.jobs.states import JobState
from apps.models.models import BaseModel
from apps.outputs.models import Moderation, Output
from apps.provenance.conf import chain_config
from apps.provenance.models import (
    AnchorBatch,
    BatchState,
    ChainDeployment,
    ProvenanceRecord,
    RecordState,
)
from apps.provenance.services import CREDENTIALS_KIND, batch_close, credentials_jobs_start
from apps.provenance.transitions import batch_finalize
from tests import factories
from workers.chain.merkle import build_tree, leaf_for_sha256
from workers.imaging.credentials import (
    TRAINED_ALGORITHMIC_MEDIA,
    UNTRUSTED,
    dev_signing,
    read_credentials,
    strip_credentials,
)
from workers.imaging.infotext import write_png
from workers.tasks.runtime import execute_job

pytest.importorskip("c2pa", reason="c2pa-python is not installed")

INFOTEXT = "a lighthouse at dusk\nSteps: 4, Sampler: Euler, Seed: 9"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory):
    """One development CA for the module (made on first use, as in development)."""
    return tmp_path_factory.mktemp("var")


@pytest.fixture
def media(settings, tmp_path, var_dir) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = var_dir
    settings.ATELIER_C2PA_CERT_FILE = ""
    settings.ATELIER_C2PA_KEY_FILE = ""
    return settings.MEDIA_ROOT


@pytest.fixture
def sd(db) -> BaseModel:
    return BaseModel.objects.create(name="demo-sd", kind="image", source="builtin")


def generated_image(project, author, media: Path, color, *, model=None, **fields) -> Output:
    """A PNG under MEDIA_ROOT as the image runner writes it (named by its SHA-256), approved."""
    rel = Path("outputs") / str(project.pk)
    buffer = io.BytesIO()
    sha = write_png(Image.new("RGB", (16, 12), color), buffer, INFOTEXT)
    (media / rel).mkdir(parents=True, exist_ok=True)
    (media / rel / f"{sha}.png").write_bytes(buffer.getvalue())
    return factories.make_output(
        project,
        author,
        kind="image",
        prompt="a lighthouse at dusk",
        sha256=sha,
        file_path=str(rel / f"{sha}.png"),
        base_model=model,
        moderation=Moderation.APPROVED,
        **fields,
    )


def batch_over(project, outputs, *, state=BatchState.FINAL) -> AnchorBatch:
    """A batch over these outputs as the anchor runner leaves it (final by default)."""
    leaves = [leaf_for_sha256(o.sha256) for o in outputs]
    tree = build_tree(leaves)
    final = state == BatchState.FINAL
    now = timezone.now()
    batch = AnchorBatch.objects.create(
        project=project,
        chain_id=31337,
        contract=CONTRACT,
        state=state,
        root="0x" + tree.root.hex(),
        count=len(leaves),
        tx_hash="0x" + "ab" * 32,
        block_number=12,
        block_hash="0x" + "cd" * 32,
        final_at=now if final else None,
    )
    for index, (output, leaf) in enumerate(zip(outputs, leaves, strict=True)):
        ProvenanceRecord.objects.create(
            output=output,
            project=project,
            sha256=output.sha256,
            leaf="0x" + leaf.hex(),
            state=RecordState.FINAL if final else RecordState.BATCHED,
            batch=batch,
            leaf_index=index,
            proof=["0x" + p.hex() for p in tree.proof(index)],
            final_at=now if final else None,
        )
    return batch


def run_credentials(batch) -> Job:
    """The job as the platform creates it (no user), run by a CPU worker (its reporter writes
    events from a thread: the tests that run it use transactional_db, as the engine's do)."""
    job = job_create(project=batch.project, kind=CREDENTIALS_KIND, params={"batch_id": batch.pk})
    execute_job(job.pk, worker_id="cpu-test")
    job.refresh_from_db()
    return job


# --------------------------------------------------------------------------- the job


def test_the_job_puts_a_signed_copy_beside_each_final_image(
    transactional_db, media, var_dir, project, people, sd
):
    output = generated_image(project, people["member"], media, (20, 120, 200), model=sd)
    original = (media / output.file_path).read_bytes()
    batch = batch_over(project, [output])

    job = run_credentials(batch)

    assert job.state == JobState.SUCCEEDED, job.error
    assert job.queue == "cpu" and job.created_by is None
    assert job.result == {"images": 1, "made": 1, "kept": 0, "failed": 0}
    record = ProvenanceRecord.objects.get(output=output)
    assert record.credential_path == output.file_path.removesuffix(".png") + ".c2pa.png"
    copy = (media / record.credential_path).read_bytes()
    # The file whose SHA-256 is on chain is untouched; the copy is it plus the manifest.
    assert (media / output.file_path).read_bytes() == original
    assert hashlib.sha256(original).hexdigest() == output.sha256 == record.sha256
    assert strip_credentials(copy) == original and copy != original
    creds = read_credentials(copy)
    [created] = creds.actions
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert created["softwareAgent"]["name"] == "demo-sd"
    assert creds.provenance == {
        "sha256": output.sha256,
        "chain_id": 31337,
        "contract": CONTRACT,
        "tx_hash": batch.tx_hash,
        "block_number": 12,
        "verify_url": reverse("provenance:verify_hash", args=[output.sha256]),
    }
    assert creds.failures == [UNTRUSTED]  # signed by the development CA, trusted by nobody
    dev_ca = dev_signing(var_dir / "c2pa").trust_anchor_pem  # the one kept under VAR_DIR
    assert read_credentials(copy, trust_anchor_pem=dev_ca).failures == []


def test_running_it_again_keeps_the_copy_as_it_is(transactional_db, media, project, people, sd):
    output = generated_image(project, people["member"], media, (200, 20, 20), model=sd)
    batch = batch_over(project, [output])
    run_credentials(batch)
    copy = media / ProvenanceRecord.objects.get(output=output).credential_path
    first = copy.read_bytes()

    again = run_credentials(batch)

    assert again.state == JobState.SUCCEEDED
    assert again.result == {"images": 1, "made": 0, "kept": 1, "failed": 0}
    assert copy.read_bytes() == first


def test_a_stale_or_foreign_copy_is_made_again(transactional_db, media, project, people, sd):
    output = generated_image(project, people["member"], media, (9, 9, 9), model=sd)
    batch = batch_over(project, [output])
    copy = media / (output.file_path.removesuffix(".png") + ".c2pa.png")
    copy.write_bytes(b"not what the job writes")

    job = run_credentials(batch)

    assert job.result["made"] == 1
    assert strip_credentials(copy.read_bytes()) == (media / output.file_path).read_bytes()


def test_one_image_that_fails_is_logged_and_the_others_get_their_copy(
    transactional_db, media, project, people, sd
):
    good = generated_image(project, people["member"], media, (1, 2, 3), model=sd)
    lost = generated_image(project, people["member"], media, (4, 5, 6), model=sd)
    (media / lost.file_path).unlink()
    batch = batch_over(project, [good, lost])

    job = run_credentials(batch)

    assert job.state == JobState.SUCCEEDED
    assert job.result == {"images": 2, "made": 1, "kept": 0, "failed": 1}
    assert ProvenanceRecord.objects.get(output=good).credential_path
    assert ProvenanceRecord.objects.get(output=lost).credential_path == ""
    lines = [e.data["message"] for e in JobEvent.objects.filter(job=job, kind=EventKind.LOG)]
    assert any(f"output {lost.pk}: the image file is missing" in line for line in lines)


def test_a_job_where_every_image_fails_fails(transactional_db, media, project, people, sd):
    output = generated_image(project, people["member"], media, (7, 7, 7), model=sd)
    (media / output.file_path).write_bytes(b"\x89PNG\r\n\x1a\nchanged since")
    batch = batch_over(project, [output])

    job = run_credentials(batch)

    assert job.state == JobState.FAILED
    assert "not the one recorded on chain" in job.error


def test_uploads_text_and_unfinished_records_get_no_job(db, media, project, people, sd):
    author = people["member"]
    upload = generated_image(project, author, media, (3, 3, 3), params={"uploaded": "me.png"})
    text = factories.make_output(project, author, text="hello", moderation=Moderation.APPROVED)
    pending = generated_image(project, author, media, (5, 5, 5), model=sd)

    batch_over(project, [upload, text])
    waiting = batch_over(project, [pending], state=BatchState.MINED)

    assert credentials_jobs_start(batch_id=waiting.pk) == []
    assert not Job.objects.filter(kind=CREDENTIALS_KIND).exists()
    for batch in AnchorBatch.objects.all():
        assert credentials_jobs_start(batch_id=batch.pk) == []


def test_a_member_cannot_start_the_job(db, media, project, people, sd):
    output = generated_image(project, people["member"], media, (8, 8, 8), model=sd)
    batch = batch_over(project, [output])

    with pytest.raises(JobParamsError, match="started by the platform"):
        job_create(
            project=project,
            kind=CREDENTIALS_KIND,
            params={"batch_id": batch.pk},
            created_by=people["admin"],
        )


# --------------------------------------------------------------------------- when it starts


def test_a_batch_becoming_final_queues_the_job(
    db, media, project, people, sd, django_capture_on_commit_callbacks
):
    output = generated_image(project, people["member"], media, (50, 60, 70), model=sd)
    batch = batch_over(project, [output], state=BatchState.MINED)

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_finalize(batch_id=batch.pk, confirmations=3)

    job = Job.objects.get(kind=CREDENTIALS_KIND)
    assert job.params == {"batch_id": batch.pk} and job.project_id == project.pk
    assert job.queue == "cpu" and job.created_by is None and job.state == JobState.QUEUED
    with django_capture_on_commit_callbacks(execute=True):
        assert not batch_finalize(batch_id=batch.pk, confirmations=4)  # already final
    assert Job.objects.filter(kind=CREDENTIALS_KIND).count() == 1


def test_a_text_only_batch_becoming_final_queues_nothing(
    db, media, project, people, django_capture_on_commit_callbacks
):
    text = factories.make_output(project, people["member"], text="x", moderation="approved")
    batch = batch_over(project, [text], state=BatchState.MINED)

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_finalize(batch_id=batch.pk, confirmations=3)

    assert not Job.objects.filter(kind=CREDENTIALS_KIND).exists()


def test_the_same_image_made_again_after_its_batch_is_final_gets_its_job_too(
    db, media, project, people, sd, django_capture_on_commit_callbacks
):
    """Its record shares the final batch's leaf as soon as a batch is closed over it."""
    author = people["member"]
    first = generated_image(project, author, media, (70, 80, 90), model=sd)
    batch = batch_over(project, [first])
    ProvenanceRecord.objects.filter(output=first).update(credential_path="done-before.png")
    again = generated_image(project, author, media, (70, 80, 90), model=sd)
    assert again.sha256 == first.sha256
    ProvenanceRecord.objects.create(
        output=again,
        project=project,
        sha256=again.sha256,
        leaf="0x" + leaf_for_sha256(again.sha256).hex(),
    )
    ChainDeployment.objects.create(chain_id=31337, address=CONTRACT, deployed_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_close(project_id=project.pk, cfg=chain_config()) is None  # no new leaf

    record = ProvenanceRecord.objects.get(output=again)
    assert record.state == RecordState.FINAL and record.batch_id == batch.pk
    job = Job.objects.get(kind=CREDENTIALS_KIND)
    assert job.params == {"batch_id": batch.pk}


def test_a_second_job_is_not_queued_while_one_waits(db, media, project, people, sd):
    output = generated_image(project, people["member"], media, (11, 12, 13), model=sd)
    batch = batch_over(project, [output])

    first = credentials_jobs_start(batch_id=batch.pk)
    second = credentials_jobs_start(batch_id=batch.pk)

    assert len(first) == 1 and second == []


# --------------------------------------------------------------------------- the download


def test_a_member_downloads_the_credentialed_copy_and_a_stranger_gets_404(
    transactional_db, client, media, project, people, sd
):
    output = generated_image(project, people["member"], media, (90, 40, 10), model=sd)
    url = reverse(
        "galleries:file", kwargs={"project_id": project.pk, "output_id": output.pk, "which": "c2pa"}
    )
    detail = reverse("galleries:output", args=[project.pk, output.pk])
    client.force_login(people["viewer"])
    assert client.get(url).status_code == 404  # no copy yet
    assert url not in client.get(detail).content.decode()

    run_credentials(batch_over(project, [output]))

    response = client.get(url + "?download=1")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    copy = media / ProvenanceRecord.objects.get(output=output).credential_path
    assert b"".join(response.streaming_content) == copy.read_bytes()
    assert f"atelier-{output.pk}-{output.sha256[:10]}.c2pa.png" in response["Content-Disposition"]
    assert url in client.get(detail).content.decode()
    client.force_login(people["outsider"])
    assert client.get(url).status_code == 404


def test_deleting_the_output_removes_its_credentialed_copy(
    transactional_db, client, media, project, people, sd, django_capture_on_commit_callbacks
):
    output = generated_image(project, people["member"], media, (33, 66, 99), model=sd)
    run_credentials(batch_over(project, [output]))
    copy = media / ProvenanceRecord.objects.get(output=output).credential_path
    assert copy.is_file()
    client.force_login(people["member"])

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("galleries:delete", args=[project.pk, output.pk]))

    assert response.status_code == 302
    assert not copy.exists() and not (media / output.file_path).exists()


# --------------------------------------------------------------------------- configuration


def test_deploy_checks_warn_about_the_development_ca_and_refuse_half_a_signer(settings, tmp_path):
    settings.ATELIER_C2PA_CERT_FILE = settings.ATELIER_C2PA_KEY_FILE = ""
    assert "atelier.W003" in check_ids(deploy=True)
    assert "atelier.W003" not in check_ids(deploy=False)

    settings.ATELIER_C2PA_CERT_FILE = str(tmp_path / "chain.pem")
    assert "atelier.E005" in check_ids(deploy=False)

    settings.ATELIER_C2PA_KEY_FILE = str(tmp_path / "signer.key")
    assert not {"atelier.W003", "atelier.E005"} & check_ids(deploy=True)


def check_ids(*, deploy: bool) -> set[str]:
    return {m.id for m in run_checks(include_deployment_checks=deploy)}
