"""Provenance: a project's records (each output's hash on its way on chain, with its batch and
transaction) for the members who may see the output, and the public verification of a SHA-256
against the chain (no authentication)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from apps.api.errors import ApiError
from apps.api.native.common import ERRORS, MAX_ID, PageQuery, page
from apps.projects import selectors as project_selectors
from apps.provenance import pages as provenance_pages
from apps.provenance import selectors as provenance_selectors
from apps.provenance.models import ProvenanceRecord

router = Router(tags=["provenance"])
RECORDS = "/projects/{int:project_id}/provenance/records/"


class BatchOut(Schema):
    id: int
    state: str = Field(..., description="closed, signed, sent, mined, final or failed")
    chain_id: int
    contract: str
    root: str = Field(..., description="The Merkle root recorded on chain")
    count: int = Field(..., description="Distinct hashes in the tree")
    tx_hash: str = Field(..., description="The registry transaction ('' until signed)")
    tx_url: str = Field(..., description="The transaction in a block explorer, when configured")
    block_number: int | None
    confirmations: int
    shared: bool = Field(..., description="Another project's batch holding the same hash")


class RecordOut(Schema):
    id: int
    output: int
    sha256: str
    leaf: str
    state: Literal["pending", "batched", "final"]
    shared_leaf: bool
    leaf_index: int | None
    proof: list[str] = Field(..., description="Sibling hashes, leaf to root")
    batch: BatchOut | None
    created_at: datetime
    final_at: datetime | None


class RecordDetail(RecordOut):
    proof_document: dict[str, Any] | None = Field(
        ...,
        description="The proof document (`python -m workers.chain.verify`), once the batch's "
        "root is in a block",
    )


class RecordPage(Schema):
    data: list[RecordOut]
    has_more: bool


class RecordList(PageQuery):
    state: Literal["pending", "batched", "final"] | None = None
    batch: int | None = Field(None, ge=1, le=MAX_ID, description="Only the records of this batch")


def record_json(r: ProvenanceRecord, *, project_id: int) -> dict:
    b = r.batch
    return {
        "id": r.pk,
        "output": r.output_id,
        "sha256": r.sha256,
        "leaf": r.leaf,
        "state": r.state,
        "shared_leaf": r.shared_leaf,
        "leaf_index": r.leaf_index,
        "proof": [str(p) for p in r.proof or []],
        "batch": (
            {
                "id": b.pk,
                "state": b.state,
                "chain_id": b.chain_id,
                "contract": b.contract,
                "root": b.root,
                "count": b.count,
                "tx_hash": b.tx_hash,
                "tx_url": provenance_selectors.explorer_tx_url(b.tx_hash),
                "block_number": b.block_number,
                "confirmations": b.confirmations,
                "shared": b.project_id != project_id,
            }
            if b is not None
            else None
        ),
        "created_at": r.created_at,
        "final_at": r.final_at,
    }


def record_detail(r: ProvenanceRecord, *, project_id: int) -> dict:
    return {
        **record_json(r, project_id=project_id),
        "proof_document": provenance_selectors.proof_for(r),
    }


@router.get(RECORDS, url_name="provenance_records", response={200: RecordPage, **ERRORS})
def list_records(request: HttpRequest, project_id: int, q: Query[RecordList]):
    """Records of the outputs the caller may see, newest first, by state or batch."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    qs = provenance_selectors.output_records(access=access, user=request.user)
    if q.state:
        qs = qs.filter(state=q.state)
    if q.batch is not None:
        qs = qs.filter(batch_id=q.batch)
    rows, more = page(qs, q)
    return {"data": [record_json(r, project_id=access.project.pk) for r in rows], "has_more": more}


@router.get(
    RECORDS + "{str:sha256}/",
    url_name="provenance_record",
    response={200: RecordDetail, **ERRORS},
)
def get_record_by_sha256(request: HttpRequest, project_id: int, sha256: str):
    """The record of an output of the project with this SHA-256 (one the caller may see)."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    sha = provenance_pages.normalize_sha256(sha256)
    if sha is None:
        raise ApiError(400, "Not a SHA-256: expected 64 hexadecimal digits", param="sha256")
    record = (
        provenance_selectors.output_records(access=access, user=request.user)
        .filter(sha256=sha)
        .order_by("pk")
        .first()
    )
    if record is None:
        raise ApiError(404, "No record of this SHA-256 in this project", param="sha256")
    return record_detail(record, project_id=access.project.pk)


@router.get(
    "/projects/{int:project_id}/outputs/{int:output_id}/provenance/",
    url_name="output_provenance",
    response={200: RecordDetail, **ERRORS},
)
def get_record_of_output(request: HttpRequest, project_id: int, output_id: int):
    """An output's record (404 while it has none, or when the caller may not see it)."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    record = (
        provenance_selectors.output_record(access=access, user=request.user, output_id=output_id)
        # A larger id names no output (and would overflow the database's integer).
        if output_id <= MAX_ID
        else None
    )
    if record is None:
        raise ApiError(404, "This output has no provenance record")
    return record_detail(record, project_id=access.project.pk)


class VerifyOut(Schema):
    sha256: str
    state: str = Field(..., description="final or recording")
    record: dict[str, Any] | None = Field(..., description="Chain facts of a final record")
    proof: dict[str, Any] | None = Field(..., description="The proof document")
    verified: bool = Field(..., description="The proof checks against the chain now")
    outcome: str
    reason: str


@router.get(
    "/verify/{str:sha256}/", url_name="verify", auth=None, response={200: VerifyOut, **ERRORS}
)
def verify(request: HttpRequest, sha256: str):
    """Public, no authentication: whether a SHA-256 is recorded on chain, its proof, and a check
    of the proof against the chain now. Names no output, project or user (see
    apps/provenance/pages.py). 404 when this instance has no record of the hash."""
    sha = provenance_pages.normalize_sha256(sha256)
    if sha is None:
        raise ApiError(400, "Not a SHA-256: expected 64 hexadecimal digits", param="sha256")
    lookup = provenance_pages.lookup(sha)
    if lookup.state == provenance_pages.UNKNOWN:
        raise ApiError(404, "No record of this SHA-256 here", sha256=sha, state=lookup.state)
    return lookup.as_json()
