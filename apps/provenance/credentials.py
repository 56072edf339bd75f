"""The `provenance.credentials` runner: a C2PA-credentialed copy of each final image of a batch.

Once a batch is final (transitions.batch_finalize queues this job on the `cpu` queue, one per
project with image records in it), every final record of the project in that batch whose output
is a generated image gets a sibling copy ``<name>.c2pa.png`` of its PNG carrying a signed
manifest: made by this model, and where its SHA-256 is recorded on chain
(workers/imaging/credentials.py says what goes in and why the original is never rewritten: its
SHA-256 is the one on chain). The copy's path, relative to MEDIA_ROOT, goes on the record;
galleries serves it as `which="c2pa"`.

Re-running is cheap and safe: a copy that already reads back with this record's assertion is
kept. One image that cannot be signed is logged on the job and counted; the others go on.
The native c2pa library is imported only when a copy is signed, so only the CPU worker loads it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.urls import reverse

from apps.jobs.registry import JobContext
from apps.provenance.models import AnchorBatch, ProvenanceRecord, RecordState
from workers.imaging.credentials import (
    ChainRecordRef,
    CredentialsError,
    SigningConfig,
    credentialed_path,
    dev_signing,
    embed_credentials,
    original_sha256,
    read_credentials,
    signing_from_files,
)
from workers.ml.reporting import JobFailed

log = logging.getLogger(__name__)

DEV_SIGNING_FOLDER = "c2pa"  # under VAR_DIR


def uses_dev_signing() -> bool:
    """True while no production certificate is configured (the development CA signs)."""
    return not (settings.ATELIER_C2PA_CERT_FILE or settings.ATELIER_C2PA_KEY_FILE)


def signing_config() -> SigningConfig:
    """The production certificate chain and key when configured, else the development CA kept
    under VAR_DIR/c2pa (made on first use). CredentialsError when only one file is named."""
    cert, key = settings.ATELIER_C2PA_CERT_FILE, settings.ATELIER_C2PA_KEY_FILE
    if uses_dev_signing():
        return dev_signing(Path(settings.VAR_DIR) / DEV_SIGNING_FOLDER)
    if not (cert and key):
        raise CredentialsError("set both ATELIER_C2PA_CERT_FILE and ATELIER_C2PA_KEY_FILE")
    try:
        return signing_from_files(cert, key)
    except OSError as exc:
        raise CredentialsError(f"the signing certificate or key cannot be read: {exc}") from None


def credential_records(*, batch_id: int, project_id: int | None = None):
    """Final records of the batch whose output is a generated image with a file (uploads are
    not generated here: no manifest says they were)."""
    records = ProvenanceRecord.objects.filter(
        batch_id=batch_id,
        state=RecordState.FINAL,
        output__kind="image",
    ).exclude(output__file_path="")
    records = records.exclude(output__params__has_key="uploaded")
    if project_id is not None:
        records = records.filter(project_id=project_id)
    return records


def chain_ref(record: ProvenanceRecord, batch: AnchorBatch) -> ChainRecordRef:
    return ChainRecordRef(
        sha256=record.sha256,
        chain_id=batch.chain_id,
        contract=batch.contract,
        tx_hash=batch.tx_hash,
        block_number=batch.block_number,
        # A path on this site: the platform knows no public address of its own.
        verify_url=reverse("provenance:verify_hash", args=[record.sha256]),
    )


def _current(copy: Path, ref: ChainRecordRef) -> bool:
    """The copy exists, is the original plus its manifest, and names this record."""
    if not copy.is_file():
        return False
    data = copy.read_bytes()
    try:
        if original_sha256(data) != ref.sha256:
            return False
    except ValueError:  # not a PNG
        return False
    found = read_credentials(data)
    return found is not None and found.provenance == ref.assertion()


def credential_one(
    record: ProvenanceRecord, batch: AnchorBatch, signing: SigningConfig
) -> tuple[str, bool]:
    """Make (or keep) the record's credentialed copy and store its path; (path relative to
    MEDIA_ROOT, made now). CredentialsError or OSError when it cannot."""
    output = record.output
    media = Path(settings.MEDIA_ROOT).resolve()
    source = (media / output.file_path).resolve()
    if media not in source.parents or not source.is_file():
        raise CredentialsError("the image file is missing")
    data = source.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise CredentialsError("the image file is not the one recorded on chain")
    ref = chain_ref(record, batch)
    copy = credentialed_path(source)
    made = not _current(copy, ref)
    if made:
        embed_credentials(
            data,
            copy,
            model=output.base_model.name if output.base_model else "unknown model",
            adapter=output.adapter.name if output.adapter else "",
            title=f"atelier-{output.pk}.png",
            signing=signing,
            record=ref,
        )
    rel = str(copy.relative_to(media))
    if record.credential_path != rel:
        ProvenanceRecord.objects.filter(pk=record.pk).update(credential_path=rel)
    return rel, made


def run_credentials(ctx: JobContext) -> dict[str, Any]:
    """Credential every final image of this project in the batch (see the module docstring)."""
    batch = AnchorBatch.objects.get(pk=ctx.params.batch_id)
    records = list(
        credential_records(batch_id=batch.pk, project_id=ctx.project_id)
        .select_related("output", "output__base_model", "output__adapter")
        .order_by("pk")
    )
    counts = {"images": len(records), "made": 0, "kept": 0, "failed": 0}
    if not records:
        return counts
    try:
        signing = signing_config()
    except CredentialsError as exc:
        raise JobFailed(f"Content Credentials cannot be signed: {exc}") from None
    errors: list[str] = []
    for done, record in enumerate(records, start=1):
        try:
            _, made = credential_one(record, batch, signing)
            counts["made" if made else "kept"] += 1
        except (CredentialsError, OSError, ValueError) as exc:
            errors.append(f"output {record.output_id}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one image must not stop the others
            log.exception("credentials for output %s failed", record.output_id)
            errors.append(f"output {record.output_id}: unexpected {type(exc).__name__}")
        if len(errors) > counts["failed"]:
            counts["failed"] = len(errors)
            ctx.reporter.log(f"no Content Credentials for {errors[-1]}", "warning")
        ctx.reporter.step(done, len(records))
    ctx.reporter.log(
        f"batch {batch.pk}: {counts['made']} credentialed copies made, {counts['kept']} already "
        f"there, {counts['failed']} failed"
    )
    if counts["failed"] == len(records):
        raise JobFailed(f"No image could be credentialed; first: {errors[0]}")
    return counts
