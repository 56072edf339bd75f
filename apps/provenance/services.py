"""Every write of provenance: project settings, records, batches, nonces and the batcher.

The batcher (`batcher_tick`) runs in the scheduler every few seconds. It is safe to run twice at
once or to die half-way: records are unique per output (made with ignore_conflicts), a batch is
closed under the chain's deployment row lock, and a batch and its job commit together.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, F, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from apps.audit.services import audit_record
from apps.jobs.models import Job
from apps.jobs.services import JobParamsError, job_create
from apps.jobs.states import TERMINAL
from apps.outputs.models import Moderation, Output
from apps.projects.models import Project
from apps.projects.selectors import ProjectAccess
from apps.provenance.conf import ChainConfig, chain_config
from apps.provenance.credentials import credential_records
from apps.provenance.models import (
    BATCH_IN_FLIGHT,
    AnchorBatch,
    BatchState,
    ChainDeployment,
    Mode,
    ProvenanceRecord,
    ProvenanceSettings,
    RecordState,
)
from workers.chain.contract import deploy_registry
from workers.chain.merkle import build_tree, leaf_for_sha256

log = logging.getLogger(__name__)

ANCHOR_KIND = "chain.anchor"
CREDENTIALS_KIND = "provenance.credentials"
# Outputs looked at per batcher round (the rest come next round).
RECORDS_PER_ROUND = 5000
# A batch whose job ended before the batch was final gets a new job after this many seconds,
# doubling per job already started for it, up to JOB_RETRY_MAX.
JOB_RETRY_BASE = 30.0
JOB_RETRY_MAX = 3600.0
SHA256_RE = r"^[0-9a-fA-F]{64}$"
LOOKUP_CHUNK = 500
# Blocks looked through for a fresh deployment's transaction.
DEPLOY_SCAN_BLOCKS = 50


def hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


# --------------------------------------------------------------------------- settings


def provenance_settings_set(
    *, access: ProjectAccess, actor, mode: str, request=None
) -> ProvenanceSettings:
    """Choose what the project records on chain (project admins), audited."""
    if not access.can("manage_rules"):
        raise PermissionDenied(gettext("Only project admins choose what is recorded on chain"))
    if mode not in Mode.values:
        raise ValidationError(f"Unknown provenance mode {mode!r}")
    with transaction.atomic():
        row, _ = ProvenanceSettings.objects.select_for_update().get_or_create(
            project=access.project
        )
        previous = row.mode
        row.mode = mode
        row.full_clean()
        row.save()
        audit_record(
            action="provenance.mode",
            actor=actor,
            project=access.project,
            target=row,
            request=request,
            data={"mode": mode, "previous": previous},
        )
    return row


# --------------------------------------------------------------------------- records


def records_create_pending(*, limit: int = RECORDS_PER_ROUND) -> int:
    """Pending records for eligible outputs that have none: approved ones, and clean ones too in
    projects whose mode is `all`; none in projects whose mode is `off`. Idempotent."""
    off = ProvenanceSettings.objects.filter(mode=Mode.OFF).values("project_id")
    everything = ProvenanceSettings.objects.filter(mode=Mode.ALL).values("project_id")
    eligible = Q(moderation=Moderation.APPROVED) | Q(
        moderation=Moderation.CLEAN, project_id__in=everything
    )
    rows = (
        Output.objects.filter(eligible, provenance__isnull=True, sha256__regex=SHA256_RE)
        .exclude(project_id__in=off)
        .order_by("pk")
        .values_list("pk", "project_id", "sha256")[:limit]
    )
    records = [
        ProvenanceRecord(
            output_id=pk,
            project_id=project_id,
            sha256=sha.lower(),
            leaf=hex32(leaf_for_sha256(sha)),
        )
        for pk, project_id, sha in rows
    ]
    # ignore_conflicts: a second batcher (or a re-run after a crash) made some already.
    ProvenanceRecord.objects.bulk_create(records, ignore_conflicts=True)
    return len(records)


# --------------------------------------------------------------------------- batches


def _due_projects(cfg: ChainConfig, now) -> list[int]:
    off = ProvenanceSettings.objects.filter(mode=Mode.OFF).values("project_id")
    waiting = (
        ProvenanceRecord.objects.filter(state=RecordState.PENDING, batch__isnull=True)
        .exclude(project_id__in=off)
        .values("project_id")
        # The age counts from when an output became eligible (its approval; its creation when
        # every output is recorded), not from the batcher's tick that made its record.
        .annotate(
            n=Count("pk"),
            oldest=Min(
                Coalesce("output__decision__decided_at", "output__created_at", "created_at")
            ),
        )
    )
    # The age is the most a hash waits: the batcher runs every `batcher_every` seconds, so a
    # batch whose oldest hash would pass its age before the next run closes on this one.
    too_old = now - timedelta(seconds=max(cfg.batch_age - cfg.batcher_every, 0.0))
    return [
        row["project_id"]
        for row in waiting
        if row["n"] >= cfg.batch_size or row["oldest"] <= too_old
    ]


def _known_leaves(shas: set[str], chain_id: int) -> dict[str, ProvenanceRecord]:
    """Records that already put these hashes in a tree on this chain. Failed batches count too:
    their leaves go on chain when staff send them again, and a root is never built twice."""
    out: dict[str, ProvenanceRecord] = {}
    ordered = sorted(shas)
    for start in range(0, len(ordered), LOOKUP_CHUNK):  # SQLite caps the parameters per query
        known = (
            ProvenanceRecord.objects.filter(
                sha256__in=ordered[start : start + LOOKUP_CHUNK],
                shared_leaf=False,
                batch__chain_id=chain_id,
            )
            .select_related("batch")
            .order_by("pk")
        )
        for record in known:
            out.setdefault(record.sha256, record)
    return out


def _copy_leaf(record: ProvenanceRecord, leader: ProvenanceRecord, now) -> None:
    record.batch = leader.batch
    record.leaf_index = leader.leaf_index
    record.proof = leader.proof
    record.shared_leaf = True
    final = leader.batch is not None and leader.batch.state == BatchState.FINAL
    record.state = RecordState.FINAL if final else RecordState.BATCHED
    record.final_at = now if final else None


def _new_batch(
    leaders: list[ProvenanceRecord], *, project_id: int, cfg: ChainConfig, contract: str
) -> AnchorBatch:
    tree = build_tree([bytes.fromhex(r.leaf[2:]) for r in leaders])
    batch = AnchorBatch.objects.create(
        project_id=project_id,
        chain_id=cfg.chain_id,
        contract=contract,
        root=hex32(tree.root),
        count=len(leaders),
    )
    for index, record in enumerate(leaders):
        record.batch = batch
        record.leaf_index = index
        record.proof = [hex32(p) for p in tree.proof(index)]
        record.state = RecordState.BATCHED
    return batch


def batch_close(*, project_id: int, cfg: ChainConfig | None = None) -> AnchorBatch | None:
    """Close one batch over the project's oldest pending records (at most batch_size): build the
    tree, store root, indexes and proofs, and start its anchor job, in one transaction.

    Returns the batch, or None when nothing new went into a tree (no pending records, or all of
    them are hashes already in a tree: those records share that leaf)."""
    cfg = cfg or chain_config()
    now = timezone.now()
    with transaction.atomic():
        # One closer per chain at a time: the "hash already in a tree?" answer holds until commit.
        deployment = ChainDeployment.objects.select_for_update().filter(chain_id=cfg.chain_id)
        contract = deployment.values_list("address", flat=True).first()
        if contract is None:
            return None
        pending = list(
            ProvenanceRecord.objects.filter(
                project_id=project_id, state=RecordState.PENDING, batch__isnull=True
            ).order_by("pk")[: cfg.batch_size]
        )
        if not pending:
            return None
        known = _known_leaves({r.sha256 for r in pending}, cfg.chain_id)
        leaders: list[ProvenanceRecord] = []
        copies: list[ProvenanceRecord] = []
        for record in pending:
            if record.sha256 in known:
                copies.append(record)
            else:
                known[record.sha256] = record
                leaders.append(record)
        batch = None
        if leaders:
            batch = _new_batch(leaders, project_id=project_id, cfg=cfg, contract=contract)
        for record in copies:
            _copy_leaf(record, known[record.sha256], now)
        fields = ["batch", "leaf_index", "proof", "state", "shared_leaf", "final_at"]
        ProvenanceRecord.objects.bulk_update(leaders + copies, fields, batch_size=2000)
        if batch is not None:
            anchor_job_start(batch=batch)
        # Copies of a leaf already final are final now: their images get credentials too.
        final = {r.batch_id for r in copies if r.state == RecordState.FINAL and r.batch_id}
        for final_batch in sorted(final):
            transaction.on_commit(
                partial(credentials_jobs_start, batch_id=final_batch), robust=True
            )
    if batch is not None:
        log.info("closed batch %s: %s hashes, root %s", batch.pk, batch.count, batch.root)
    return batch


def anchor_job_start(*, batch: AnchorBatch) -> Job | None:
    """Start the batch's `chain.anchor` job unless one is running; None when a project cap
    refuses it now (the batcher tries again next round)."""
    with transaction.atomic():
        # of=("self",): PostgreSQL locks no row across the nullable join to the job.
        row = (
            AnchorBatch.objects.select_for_update(of=("self",))
            .select_related("job", "project")
            .get(pk=batch.pk)
        )
        if row.project is None or row.state not in BATCH_IN_FLIGHT:
            return None
        if row.job is not None and row.job.state not in TERMINAL:
            return row.job
        try:
            # A platform job: no user, so no per-user cap; the project's caps still apply.
            job = job_create(
                project=row.project, kind=ANCHOR_KIND, params={"batch_id": row.pk}, created_by=None
            )
        except JobParamsError as exc:
            log.warning("batch %s: anchor job not started now: %s", row.pk, exc)
            return None
        AnchorBatch.objects.filter(pk=row.pk).update(job=job, jobs_started=F("jobs_started") + 1)
    batch.job = job
    return job


def credentials_jobs_start(*, batch_id: int) -> list[Job]:
    """Queue a `provenance.credentials` job (a platform job, on the CPU queue) for each project
    with final images in the batch that have no credentialed copy yet, unless one is already
    waiting or running for it. A project cap that refuses one now is logged, not raised."""
    project_ids = set(
        credential_records(batch_id=batch_id)
        .filter(credential_path="")
        .order_by()
        .values_list("project_id", flat=True)
        .distinct()
    )
    busy = set(
        Job.objects.filter(
            kind=CREDENTIALS_KIND, project_id__in=project_ids, params__batch_id=batch_id
        )
        .exclude(state__in=TERMINAL)
        .values_list("project_id", flat=True)
    )
    jobs = []
    for project in Project.objects.filter(pk__in=project_ids - busy).order_by("pk"):
        try:
            jobs.append(
                job_create(
                    project=project,
                    kind=CREDENTIALS_KIND,
                    params={"batch_id": batch_id},
                    created_by=None,
                )
            )
        except JobParamsError as exc:
            log.warning(
                "batch %s: credentials job not started in project %s: %s", batch_id, project.pk, exc
            )
    return jobs


def anchor_jobs_resume(*, now=None) -> int:
    """Start a new job for each batch in flight whose job is gone or ended before the batch was
    final (a refused start, a failed node call), with back-off per job already started."""
    now = now or timezone.now()
    started = 0
    for batch in AnchorBatch.objects.filter(
        state__in=BATCH_IN_FLIGHT, project__isnull=False
    ).select_related("job"):
        job = batch.job
        if job is not None:
            if job.state not in TERMINAL:
                continue
            wait = min(JOB_RETRY_BASE * 2 ** max(batch.jobs_started - 1, 0), JOB_RETRY_MAX)
            if job.finished_at and job.finished_at > now - timedelta(seconds=wait):
                continue
        if anchor_job_start(batch=batch) is not None:
            started += 1
    return started


def batcher_tick() -> dict[str, int]:
    """One round of the batcher (the scheduler's periodic hook): new records, due batches
    closed, anchor jobs resumed. Does nothing while no chain is configured."""
    cfg = chain_config()
    if not cfg.enabled:
        return {}
    made = records_create_pending()
    closed = 0
    if ChainDeployment.objects.filter(chain_id=cfg.chain_id).exists():
        for project_id in _due_projects(cfg, timezone.now()):
            # Several batches when more than batch_size wait; stop once nothing new is closed.
            while _pending_count(project_id) and batch_close(project_id=project_id, cfg=cfg):
                closed += 1
                if _pending_count(project_id) < cfg.batch_size:
                    break
    else:
        log.warning("no registry deployed on chain %s: run manage.py chain_deploy", cfg.chain_id)
    resumed = anchor_jobs_resume()
    return {"records": made, "batches": closed, "jobs": resumed}


def _pending_count(project_id: int) -> int:
    return ProvenanceRecord.objects.filter(
        project_id=project_id, state=RecordState.PENDING, batch__isnull=True
    ).count()


# --------------------------------------------------------------------------- deployments


def _deployment_tx(w3, *, address: str, deployer: str, since: int) -> tuple[str, int | None]:
    """The transaction that created `address` (scanning the few blocks since `since`)."""
    head = w3.eth.block_number
    for number in range(max(since, head - DEPLOY_SCAN_BLOCKS), head + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx.get("to") is None and tx["from"] == deployer:
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                if receipt.get("contractAddress") == address:
                    return hex32(tx["hash"]), number
    return "", None


def chain_deployment_ensure(
    *, w3, account, chain_id: int, force: bool = False
) -> tuple[ChainDeployment, bool]:
    """The chain's registry: the recorded one while its address holds code, else a new one
    deployed from `account` (also with `force`). Returns (deployment, deployed now)."""
    current = ChainDeployment.objects.filter(chain_id=chain_id).first()
    if current is not None and not force and len(w3.eth.get_code(current.address)) > 0:
        return current, False
    since = w3.eth.block_number
    address = deploy_registry(w3, account=account)
    tx_hash, block = _deployment_tx(w3, address=address, deployer=account.address, since=since)
    row, _ = ChainDeployment.objects.update_or_create(
        chain_id=chain_id,
        defaults={
            "address": address,
            "tx_hash": tx_hash,
            "block_number": block,
            "deployer": account.address,
            "deployed_at": timezone.now(),
        },
    )
    log.info("registry deployed at %s on chain %s", address, chain_id)
    return row, True
