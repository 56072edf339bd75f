"""Reads of provenance, scoped by the project's permission layer and the outputs' visibility rule.

What the pages (verify, batches, gallery badge) build on. Everything a proof holds (hashes, the
root, the transaction) is public on the chain; what stays private is which output, and which
project, a hash belongs to: only members who may see the output get its record.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from apps.outputs.selectors import visible_outputs
from apps.projects.selectors import ProjectAccess
from apps.provenance.conf import chain_config
from apps.provenance.models import (
    AnchorBatch,
    BatchState,
    Mode,
    ProvenanceRecord,
    ProvenanceSettings,
    RecordState,
)
from workers.chain.proof import proof_document

# A proof can be handed out once its root is in a block (`final` once confirmed).
PROVABLE = (BatchState.MINED, BatchState.FINAL)


def project_mode(*, project_id: int) -> str:
    """What the project records on chain (`approved` when it never chose)."""
    row = ProvenanceSettings.objects.filter(project_id=project_id).values_list("mode", flat=True)
    return row.first() or Mode.APPROVED


def project_batches(*, access: ProjectAccess) -> QuerySet[AnchorBatch]:
    """The project's batches, newest first."""
    return AnchorBatch.objects.filter(project=access.project).select_related("job")


def project_batch(*, access: ProjectAccess, batch_id: int) -> AnchorBatch:
    """One batch of the project; 404 for another project's."""
    batch = project_batches(access=access).filter(pk=batch_id).first()
    if batch is None:
        raise Http404("No such batch")
    return batch


def output_records(*, access: ProjectAccess, user) -> QuerySet[ProvenanceRecord]:
    """Records of the outputs this member may see (gallery badges: filter by output ids)."""
    outputs = visible_outputs(access=access, user=user)
    return ProvenanceRecord.objects.filter(output__in=outputs).select_related("batch")


def output_record(*, access: ProjectAccess, user, output_id: int) -> ProvenanceRecord | None:
    """The record of one output this member may see; None when it has none (yet)."""
    return output_records(access=access, user=user).filter(output_id=output_id).first()


def proof_for(record: ProvenanceRecord) -> dict[str, Any] | None:
    """The record's proof document (workers/chain/proof.py), once its root is in a block."""
    batch = record.batch
    if batch is None or batch.state not in PROVABLE or record.leaf_index is None:
        return None
    if not batch.tx_hash:  # adopted from a record whose event the node could not find
        return None
    return proof_document(
        sha256_hex=record.sha256,
        leaf=bytes.fromhex(record.leaf[2:]),
        proof=[bytes.fromhex(p[2:]) for p in record.proof],
        root=batch.root_bytes,
        chain_id=batch.chain_id,
        contract=batch.contract,
        tx_hash=batch.tx_hash,
        block_number=batch.block_number or 0,
        batch_count=batch.count,
        leaf_index=record.leaf_index,
    )


def proof_for_sha256(sha256: str) -> dict[str, Any] | None:
    """Anyone holding a file may ask whether its hash is on chain: the proof document of a final
    record with that SHA-256, which names no output and no project."""
    record = (
        ProvenanceRecord.objects.filter(sha256=sha256.lower(), state=RecordState.FINAL)
        .select_related("batch")
        .order_by("pk")
        .first()
    )
    return proof_for(record) if record is not None else None


def explorer_tx_url(tx_hash: str) -> str:
    """A link to the transaction in a block explorer (CHAIN_EXPLORER_TX_URL); '' when unset."""
    template = chain_config().explorer_tx_url
    if not template or not tx_hash:
        return ""
    return template.format(tx_hash=tx_hash)
