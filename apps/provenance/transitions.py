"""The anchor runner's writes: batch state transitions, nonces, and a staff retry.

Each is a conditional UPDATE or a short locked transaction on the batch row: a transition that
changes no row did not happen (another attempt of the job moved the batch first), and signing
commits the nonce, the raw transaction and its hash together, before anything is broadcast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from apps.audit.services import audit_record
from apps.provenance.models import (
    AnchorBatch,
    BatchState,
    ProvenanceRecord,
    RecordState,
    SignerNonce,
)
from apps.provenance.services import anchor_job_start, credentials_jobs_start
from apps.webhooks.services import provenance_confirmed_emit


class BatchConflict(Exception):
    """The batch was not in the state a write expected: another attempt moved it first."""


def batch_retry(*, batch: AnchorBatch, actor, request=None) -> AnchorBatch:
    """Send a failed batch again (platform staff): back to closed, a new nonce, a new job."""
    if not getattr(actor, "is_staff", False):
        raise PermissionDenied(gettext("Only platform staff retry a failed batch"))
    with transaction.atomic():
        changed = AnchorBatch.objects.filter(pk=batch.pk, state=BatchState.FAILED).update(
            state=BatchState.CLOSED,
            nonce=None,
            raw_tx="",
            tx_hash="",
            gas_limit=None,
            error="",
        )
        if not changed:
            raise ValidationError(f"Batch {batch.pk} has not failed")
        audit_record(
            action="provenance.batch.retry",
            actor=actor,
            project=batch.project,
            target=batch,
            request=request,
            data={"root": batch.root},
        )
        batch.refresh_from_db()
        anchor_job_start(batch=batch)
    return batch


def batch_move(*, batch_id: int, sources: tuple[str, ...], target: str, **fields: Any) -> bool:
    """Move a batch from one of `sources` to `target` (a conditional UPDATE); False if it was not
    in one of them (another attempt moved it)."""
    return bool(
        AnchorBatch.objects.filter(pk=batch_id, state__in=sources).update(state=target, **fields)
    )


def nonce_take(*, chain_id: int, address: str, chain_next: int) -> int:
    """The next nonce of `address`, from the database under a row lock (call inside the
    transaction that stores the signed transaction). `chain_next` is the node's pending count:
    the database never hands out a nonce the chain has already used."""
    SignerNonce.objects.bulk_create(
        [SignerNonce(chain_id=chain_id, address=address, next_nonce=chain_next)],
        ignore_conflicts=True,
    )
    row = SignerNonce.objects.select_for_update().get(chain_id=chain_id, address=address)
    nonce = max(row.next_nonce, chain_next)
    SignerNonce.objects.filter(pk=row.pk).update(next_nonce=nonce + 1)
    return nonce


def batch_sign(
    *,
    batch_id: int,
    sender: str,
    chain_id: int,
    chain_next: int,
    sign: Callable[[int], dict[str, Any]],
) -> dict[str, Any]:
    """Take a nonce, sign with it (`sign(nonce)` returns the batch fields: raw_tx, tx_hash,
    fees, gas) and persist closed → signed, all in one transaction: a crash anywhere before the
    commit leaves the batch closed and the nonce untaken; nothing was broadcast."""
    with transaction.atomic():
        batch = AnchorBatch.objects.select_for_update().get(pk=batch_id)
        if batch.state != BatchState.CLOSED:
            raise BatchConflict(f"batch {batch_id} is {batch.state}, not closed")
        nonce = nonce_take(chain_id=chain_id, address=sender, chain_next=chain_next)
        fields = sign(nonce)
        AnchorBatch.objects.filter(pk=batch_id).update(
            state=BatchState.SIGNED,
            sender=sender,
            nonce=nonce,
            signed_at=timezone.now(),
            tx_hashes=[*batch.tx_hashes, fields["tx_hash"]],
            **fields,
        )
    return {"nonce": nonce, **fields}


def batch_replace(*, batch_id: int, old_tx_hash: str, fields: dict[str, Any]) -> bool:
    """Persist a replacement transaction (same nonce, higher fees) before it is broadcast:
    sent → signed with the new raw transaction; False when the batch moved meanwhile."""
    with transaction.atomic():
        batch = AnchorBatch.objects.select_for_update().get(pk=batch_id)
        if batch.state != BatchState.SENT or batch.tx_hash != old_tx_hash:
            return False
        AnchorBatch.objects.filter(pk=batch_id).update(
            state=BatchState.SIGNED,
            replacements=F("replacements") + 1,
            tx_hashes=[*batch.tx_hashes, fields["tx_hash"]],
            **fields,
        )
    return True


def batch_finalize(*, batch_id: int, confirmations: int) -> bool:
    """mined → final, and every record of the batch (shared leaves too) final with it; then its
    images' Content Credentials jobs are queued."""
    now = timezone.now()
    with transaction.atomic():
        if not batch_move(
            batch_id=batch_id,
            sources=(BatchState.MINED,),
            target=BatchState.FINAL,
            final_at=now,
            confirmations=confirmations,
        ):
            return False
        ProvenanceRecord.objects.filter(batch_id=batch_id).update(
            state=RecordState.FINAL, final_at=now
        )
        # Webhooks' outbox (provenance.confirmed per project of the batch), same transaction.
        provenance_confirmed_emit(
            batch=AnchorBatch.objects.get(pk=batch_id),
            records=ProvenanceRecord.objects.filter(batch_id=batch_id),
        )
        # After the commit, robust: the batch is final whatever happens to the CPU job's start.
        transaction.on_commit(lambda: credentials_jobs_start(batch_id=batch_id), robust=True)
    return True
