"""Read-side helpers for the provenance pages: the public verifier and a project's batches.

**What a stranger learns** (the verify page, its proof download and `GET /api/v1/verify/`):
only chain facts, which anyone can read from the registry's events anyway, and the inclusion
proof: the SHA-256, whether this instance is recording it (`recording`) or recorded it
(`final`), the chain id, registry, transaction, block and its time, the root, the batch's size
and the leaf's index, and the submitter. Never which output, project, user, model or prompt the
hash belongs to, and nothing about records that are not final beyond "recording soon".

**Verified** means: the proof leads from the file's hash to the root, and the registry on the
chain *now* holds that root, recorded by this instance's signer (the batch's sender). It is
never cached and never taken from the database: a node that cannot be reached gives
"not verified". Each request costs at most two indexed queries, one pass over a bounded upload
and a handful of RPC calls, each with a short timeout.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from django.db.models import Count, Q, QuerySet
from web3 import Web3

from apps.projects.selectors import ProjectAccess
from apps.provenance.conf import chain_config
from apps.provenance.models import AnchorBatch, ProvenanceRecord, RecordState
from apps.provenance.selectors import explorer_tx_url, proof_for
from workers.chain.proof import KIND, Verification, verify_document
from workers.imaging.credentials import stream_hashes

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ROOT_RE = re.compile(r"^0x[0-9a-f]{64}$")
# How workers/chain/proof.py's verify_document says the node failed it.
NODE_FAILURE = "could not read the registry"
# Each call to the node from a public page gives up after this long.
VERIFY_RPC_TIMEOUT_S = 5.0
# A proof document is a few KB (one hash per tree level): anything larger is not one.
MAX_PROOF_BYTES = 256 * 1024
MAX_PROOF_BRACKETS = 64
BATCHES_PAGE_SIZE = 25

# Verification outcomes as the pages name them.
VERIFIED, NOT_VERIFIED, UNREACHABLE = "verified", "not_verified", "unreachable"
# The lookup's states: the hash is on chain, on its way, or unknown here.
FINAL, RECORDING, UNKNOWN = "final", "recording", "unknown"


def normalize_sha256(text: str | None) -> str | None:
    """A SHA-256 as 64 lower-case hex digits (spaces and a 0x prefix allowed), or None."""
    value = (text or "").strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    return value if SHA256_RE.fullmatch(value) else None


@dataclass(frozen=True)
class Check:
    """A verification as a page shows it."""

    outcome: str  # VERIFIED, NOT_VERIFIED or UNREACHABLE
    reason: str
    block_number: int | None = None
    block_time: datetime | None = None
    submitter: str | None = None

    @property
    def verified(self) -> bool:
        return self.outcome == VERIFIED


@dataclass(frozen=True)
class Lookup:
    """What this instance knows about one SHA-256, fit for anyone to see."""

    sha256: str
    state: str  # FINAL, RECORDING or UNKNOWN
    document: dict[str, Any] | None = None
    check: Check | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        check = self.check
        return {
            "sha256": self.sha256,
            "state": self.state,
            "record": _json_facts(self.facts, check) if self.facts else None,
            "proof": self.document,
            "verified": bool(check and check.verified),
            "outcome": check.outcome if check else NOT_VERIFIED,
            "reason": check.reason if check else _state_reason(self.state),
        }


def _state_reason(state: str) -> str:
    if state == RECORDING:
        return "recorded soon: this hash is waiting for its batch to be final on chain"
    return "no record of this SHA-256 on this instance"


def _json_facts(facts: dict[str, Any], check: Check | None) -> dict[str, Any]:
    out = {k: v for k, v in facts.items() if k != "final_at"}
    out["final_at"] = facts["final_at"].isoformat() if facts.get("final_at") else None
    when = check.block_time if check else None
    out["block_time"] = when.isoformat() if when else None
    out["submitter"] = check.submitter if check else None
    return out


# --------------------------------------------------------------------------- the chain now


def chain_w3():
    """A Web3 on the configured node with a short timeout and no retries (a visitor waits for
    the answer), or None when none is configured. Tests swap this for an in-process chain."""
    cfg = chain_config()
    if not cfg.enabled:
        return None
    provider = Web3.HTTPProvider(
        cfg.rpc_url,
        request_kwargs={"timeout": VERIFY_RPC_TIMEOUT_S},
        exception_retry_configuration=None,
    )
    return Web3(provider)


def check_document(doc: dict[str, Any], *, submitter: str | None = None) -> Check:
    """The proof document against the registry on chain now (never "verified" otherwise)."""
    try:
        w3 = chain_w3()
    except Exception:  # a malformed CHAIN_RPC_URL
        log.exception("the verifier cannot connect to the chain node")
        return Check(UNREACHABLE, "could not reach the chain node")
    if w3 is None:
        return Check(UNREACHABLE, "no chain node is configured here (CHAIN_RPC_URL)")
    result = verify_document(doc, w3=w3, expected_submitter=submitter or None)
    return _as_check(result)


def _as_check(result: Verification) -> Check:
    reason = result.reason
    if result.verified:
        outcome = VERIFIED
    elif reason.startswith(NODE_FAILURE):
        # The exception's text can name the node's URL, and with it an API key: the log gets
        # it, a visitor only its kind ("could not read the registry: ConnectionError").
        log.warning("the verifier could not read the chain: %s", reason)
        outcome, reason = UNREACHABLE, ":".join(reason.split(":")[:2])
    else:
        outcome = NOT_VERIFIED
    when = (
        datetime.fromtimestamp(result.timestamp, tz=UTC) if result.timestamp is not None else None
    )
    return Check(outcome, reason, result.block_number, when, result.submitter)


# --------------------------------------------------------------------------- lookups


def _final_record(sha256: str) -> ProvenanceRecord | None:
    return (
        ProvenanceRecord.objects.filter(sha256=sha256, state=RecordState.FINAL)
        .select_related("batch")
        .order_by("pk")
        .first()
    )


def _facts(record: ProvenanceRecord) -> dict[str, Any]:
    batch = record.batch
    assert batch is not None  # a final record is in a batch
    return {
        "chain_id": batch.chain_id,
        "contract": batch.contract,
        "tx_hash": batch.tx_hash,
        "tx_url": explorer_tx_url(batch.tx_hash),
        "block_number": batch.block_number,
        "root": batch.root,
        "batch_count": batch.count,
        "leaf_index": record.leaf_index,
        "final_at": record.final_at,
    }


def lookup(sha256: str) -> Lookup:
    """The public answer for a SHA-256 (normalized first): its final record's chain facts,
    proof and a check against the chain now, or "recording", or "unknown"."""
    record = _final_record(sha256)
    if record is None:
        waiting = ProvenanceRecord.objects.filter(
            sha256=sha256, state__in=(RecordState.PENDING, RecordState.BATCHED)
        ).exists()
        return Lookup(sha256, RECORDING if waiting else UNKNOWN)
    document = proof_for(record)
    if document is None:
        check = Check(NOT_VERIFIED, "recorded, but no proof can be given for it")
        return Lookup(sha256, FINAL, None, check, _facts(record))
    check = check_document(document, submitter=record.batch.sender if record.batch else None)
    return Lookup(sha256, FINAL, document, check, _facts(record))


def check_visitor_document(doc: dict[str, Any]) -> Check:
    """A proof document a visitor brought, checked as written. Anyone can deploy a registry and
    record any root, so it is only "verified" when the root is one of this instance's batches
    and the chain says this instance's signer recorded it."""
    chain_id, root = doc.get("chain_id"), str(doc.get("root", "")).lower()
    valid = (
        isinstance(chain_id, int)
        and not isinstance(chain_id, bool)
        and 0 <= chain_id < 2**63  # what the database column holds
        and ROOT_RE.fullmatch(root)
    )
    batch = (
        AnchorBatch.objects.filter(chain_id=chain_id, root=root).only("sender").first()
        if valid
        else None
    )
    if batch is None or not batch.sender:
        return Check(NOT_VERIFIED, "this instance recorded no batch with this root on that chain")
    return check_document(doc, submitter=batch.sender)


def proof_document_for(sha256: str) -> dict[str, Any] | None:
    """The downloadable proof of a final record with this SHA-256 (no chain call)."""
    record = _final_record(sha256)
    return proof_for(record) if record is not None else None


# --------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class Upload:
    """What an uploaded file is: a proof document, or a file whose hash is looked up."""

    sha256: str  # what to look up ("" for a proof document without a valid one)
    document: dict[str, Any] | None = None  # a proof document the visitor brought
    file_sha256: str = ""  # the upload's own SHA-256
    had_credentials: bool = False  # a PNG with C2PA credentials: sha256 is the file without them


def read_upload(f: IO[bytes], *, size: int) -> Upload:
    """Hash an upload in one pass and constant memory. A small file that parses as a proof
    document is taken as one; a PNG with Content Credentials is looked up by its hash without
    them (the hash the credential says was recorded: see workers/imaging/credentials.py)."""
    if size <= MAX_PROOF_BYTES:
        document = _proof_document(f.read())
        f.seek(0)
        if document is not None:
            return Upload(normalize_sha256(str(document.get("sha256"))) or "", document)
    whole, original = stream_hashes(f)
    if original is not None:
        return Upload(original, file_sha256=whole, had_credentials=True)
    return Upload(whole, file_sha256=whole)


def _proof_document(data: bytes) -> dict[str, Any] | None:
    if data.lstrip()[:1] != b"{":
        return None
    # A proof is one object holding one list of strings. Deep nesting is refused unparsed: web3's
    # py_ecc raises the interpreter's recursion limit to 100,000, so json.loads would overflow
    # the C stack (a crash, not a RecursionError) long before that limit.
    if data.count(b"{") + data.count(b"[") > MAX_PROOF_BRACKETS:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        return None
    return doc


# --------------------------------------------------------------------------- a project's page


def record_counts(*, access: ProjectAccess) -> dict[str, int]:
    """The project's records by state (every state present, 0 when none)."""
    rows = (
        ProvenanceRecord.objects.filter(project=access.project)
        .order_by()
        .values_list("state")
        .annotate(n=Count("pk"))
    )
    counts = Counter({state: n for state, n in rows})
    return {state: counts.get(state, 0) for state in RecordState.values}


def batches_with_records(*, access: ProjectAccess) -> QuerySet[AnchorBatch]:
    """Batches holding the project's records, newest first: its own, and other projects'
    whose leaf a record of this project shares (the same content hash)."""
    shared = ProvenanceRecord.objects.filter(
        project=access.project, shared_leaf=True, batch__isnull=False
    ).values("batch_id")
    return AnchorBatch.objects.filter(Q(project=access.project) | Q(pk__in=shared)).order_by(
        "-created_at", "-id"
    )


def records_per_batch(*, access: ProjectAccess, batch_ids: list[int]) -> dict[int, int]:
    """How many of the project's records each of these batches holds (one query)."""
    rows = (
        ProvenanceRecord.objects.filter(project=access.project, batch_id__in=batch_ids)
        .order_by()
        .values_list("batch_id")
        .annotate(n=Count("pk"))
    )
    return dict(rows)


def batch_row(batch: AnchorBatch, *, project_id: int, mine: dict[int, int]) -> dict[str, Any]:
    """One line of the project's batch table (no query)."""
    return {
        "batch": batch,
        "mine": mine.get(batch.pk, 0),
        "shared": batch.project_id != project_id,
        "tx_url": explorer_tx_url(batch.tx_hash),
    }
