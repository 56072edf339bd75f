"""Provenance on-chain: output hashes → Merkle batches → one registry transaction per batch.

How the rows fit (the pages read them as documented here):

- A **ProvenanceRecord** is made for every output a project's `ProvenanceSettings.mode` says to
  record (by the periodic batcher, apps/provenance/services.py). It starts `pending`, becomes
  `batched` when a batch is closed over it (its `batch`, `leaf_index` and `proof` are then set
  and never change), and `final` when its batch's transaction has enough confirmations.
- An **AnchorBatch** is one Merkle tree over up to ATELIER_CHAIN_BATCH_SIZE distinct hashes of
  one project, and the one transaction that records its root in the registry contract. Its
  `state` walks closed → signed → sent → mined → final (or failed); a `chain.anchor` job on the
  signer runs it (apps/provenance/runners.py) and can resume from any state.
- The same content hash is put in a tree once per chain: a later output with the same SHA-256
  (in any project) gets a record that shares the first one's leaf (`shared_leaf`: its `batch`,
  `leaf_index` and `proof` are copies), so its batch may belong to another project.
- **SignerNonce** is the signer's next nonce per chain: taken from the database under a row
  lock, so two batches never sign with the same nonce and none is skipped.
- **ChainDeployment** is the registry contract in use on a chain (`manage.py chain_deploy`).

Hex values (roots, leaves, hashes, raw transactions) are stored lower-case with a 0x prefix.
The signing key is never stored anywhere in the database.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

HEX32 = 66  # "0x" + 64 hex digits
ADDRESS = 42


class ChainDeployment(models.Model):
    """The registry contract in use on one chain (one row per chain id)."""

    chain_id = models.PositiveBigIntegerField(unique=True)
    address = models.CharField(max_length=ADDRESS, help_text="Checksum address of the registry")
    tx_hash = models.CharField(max_length=HEX32, blank=True, help_text="Deployment transaction")
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    deployer = models.CharField(max_length=ADDRESS, blank=True)
    deployed_at = models.DateTimeField()

    class Meta:
        ordering = ["chain_id"]

    def __str__(self) -> str:
        return f"registry {self.address} on chain {self.chain_id}"


class Mode(models.TextChoices):
    APPROVED = "approved", _("Outputs a reviewer approved")
    ALL = "all", _("Every clean or approved output")
    OFF = "off", _("Off")


class ProvenanceSettings(models.Model):
    """What a project records on chain. No row means the default (`approved`)."""

    project = models.OneToOneField(
        "projects.Project", on_delete=models.CASCADE, related_name="provenance_settings"
    )
    mode = models.CharField(
        max_length=16,
        choices=Mode.choices,
        default=Mode.APPROVED,
        help_text=(
            "approved: outputs a reviewer approved after a flag; all: every clean or approved "
            "output as soon as it exists; off: nothing new (pending records wait, unbatched)"
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "provenance settings"

    def __str__(self) -> str:
        return f"provenance of project {self.project_id}: {self.mode}"


class BatchState(models.TextChoices):
    CLOSED = "closed", _("Closed")  # tree built, nothing signed yet
    SIGNED = "signed", _("Signed")  # raw transaction persisted, maybe not yet broadcast
    SENT = "sent", _("Sent")  # broadcast, waiting for a receipt
    MINED = "mined", _("Mined")  # in a block, waiting for confirmations
    FINAL = "final", _("Final")  # confirmed: its records are final
    FAILED = "failed", _("Failed")  # the transaction reverted (see `error`)


BATCH_IN_FLIGHT = (BatchState.CLOSED, BatchState.SIGNED, BatchState.SENT, BatchState.MINED)


class AnchorBatch(models.Model):
    """One Merkle tree of output hashes and the transaction that records its root."""

    project = models.ForeignKey(
        "projects.Project",
        null=True,
        blank=True,
        # The chain keeps the root after a project is gone; so does the batch (other projects'
        # records may share its leaves).
        on_delete=models.SET_NULL,
        related_name="anchor_batches",
    )
    chain_id = models.PositiveBigIntegerField()
    contract = models.CharField(max_length=ADDRESS, help_text="Registry address used")
    state = models.CharField(
        max_length=16, choices=BatchState.choices, default=BatchState.CLOSED, db_index=True
    )
    root = models.CharField(max_length=HEX32)
    count = models.PositiveIntegerField(help_text="Leaves in the tree (distinct hashes)")
    # The transaction. `nonce`, `raw_tx` and `tx_hash` are written together, before broadcast;
    # a replacement (same nonce, higher fees) overwrites them and is added to `tx_hashes`.
    sender = models.CharField(max_length=ADDRESS, blank=True, help_text="Signer address")
    nonce = models.PositiveBigIntegerField(null=True, blank=True)
    raw_tx = models.TextField(blank=True, help_text="Signed raw transaction (public data)")
    tx_hash = models.CharField(max_length=HEX32, blank=True, db_index=True)
    tx_hashes = models.JSONField(
        default=list, blank=True, help_text="Every transaction hash signed for this batch"
    )
    gas_limit = models.PositiveBigIntegerField(null=True, blank=True)
    max_fee_per_gas = models.PositiveBigIntegerField(null=True, blank=True)
    max_priority_fee_per_gas = models.PositiveBigIntegerField(null=True, blank=True)
    replacements = models.PositiveIntegerField(default=0)
    gas_used = models.PositiveBigIntegerField(null=True, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=HEX32, blank=True)
    confirmations = models.PositiveIntegerField(default=0)
    # The job running it now (or last). `jobs_started` counts jobs made for it: the batcher
    # starts another, with back-off, when one ends before the batch is final.
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    jobs_started = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was closed")
    signed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="Last broadcast")
    mined_at = models.DateTimeField(null=True, blank=True)
    final_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "anchor batches"
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "root"], name="anchor_batch_root_once"),
            models.UniqueConstraint(
                fields=["chain_id", "sender", "nonce"],
                condition=Q(nonce__isnull=False),
                name="anchor_batch_nonce_once",
            ),
        ]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.count} hashes, {self.state})"

    @property
    def root_bytes(self) -> bytes:
        return bytes.fromhex(self.root[2:])


class RecordState(models.TextChoices):
    PENDING = "pending", _("Pending")  # waiting for a batch
    BATCHED = "batched", _("Batched")  # in a batch whose transaction is not final yet
    FINAL = "final", _("Final")  # its batch's root is on chain with enough confirmations


class ProvenanceRecord(models.Model):
    """One output's hash on its way on chain, and its inclusion proof once batched."""

    output = models.OneToOneField(
        "outputs.Output", on_delete=models.CASCADE, related_name="provenance"
    )
    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="provenance_records"
    )
    sha256 = models.CharField(max_length=64, db_index=True)
    leaf = models.CharField(max_length=HEX32, help_text="keccak256 of the SHA-256's 32 bytes")
    state = models.CharField(
        max_length=16, choices=RecordState.choices, default=RecordState.PENDING, db_index=True
    )
    batch = models.ForeignKey(
        AnchorBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="records"
    )
    leaf_index = models.PositiveIntegerField(null=True, blank=True)
    proof = models.JSONField(default=list, blank=True, help_text="Sibling hashes, leaf to root")
    # True when another record with the same SHA-256 put the leaf in the tree (this one copies
    # its batch, index and proof).
    shared_leaf = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    final_at = models.DateTimeField(null=True, blank=True)
    # Images: the copy of the output's PNG carrying a signed C2PA manifest (relative to
    # MEDIA_ROOT), made by the `provenance.credentials` job once the record is final. The
    # original file, whose SHA-256 is on chain, is never rewritten (apps/provenance/credentials.py).
    credential_path = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "state"])]
        constraints = [
            # One leaf per index and one per content hash in a tree (copies are not leaves).
            models.UniqueConstraint(
                fields=["batch", "leaf_index"],
                condition=Q(shared_leaf=False, batch__isnull=False),
                name="provenance_leaf_index_once",
            ),
            models.UniqueConstraint(
                fields=["batch", "sha256"],
                condition=Q(shared_leaf=False, batch__isnull=False),
                name="provenance_leaf_hash_once",
            ),
        ]

    def __str__(self) -> str:
        return f"provenance of output {self.output_id} ({self.state})"


class SignerNonce(models.Model):
    """The next nonce the signer uses on a chain: allocated under this row's lock."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=ADDRESS)
    next_nonce = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="signer_nonce_once")
        ]

    def __str__(self) -> str:
        return f"{self.address} on chain {self.chain_id}: next nonce {self.next_nonce}"
