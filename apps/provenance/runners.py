"""The `chain.anchor` runner: one batch closed → signed → sent → mined → final, crash-safe.

It runs only on the signer (the `chain` queue worker), the one process that loads the key
(workers.chain.keys.load_signer, from the environment); the key never reaches the database,
a log line, job params or events, or a Celery message. Every step is saved on the batch row
before the next begins, so a job re-queued after its worker died resumes from the batch's state:

- any state: when the registry already holds the root, that record is adopted (its transaction
  and block), so a root is never sent twice;
- closed: a nonce from the database (SignerNonce, locked), EIP-1559 fees from the node, signed,
  and raw transaction + hash + nonce stored in one transaction *before* any broadcast;
- signed: the stored raw transaction is broadcast (again: "already known" and "nonce too low"
  answers are looked into, not failures);
- sent: receipts polled; without one for ATELIER_CHAIN_REPLACE_AFTER_SECONDS, a replacement
  (same nonce, fees × 1.125 or the node's, whichever is higher) is stored, then broadcast; a
  reverted transaction fails the batch with the reason;
- mined: final once ATELIER_CHAIN_CONFIRMATIONS blocks are on top; the block hash is checked
  each time, and a reorganisation sends the batch back to `sent` for its new receipt.
"""

from __future__ import annotations

import os
from typing import Any

from apps.jobs.registry import JobContext
from apps.provenance import chain
from apps.provenance.anchor import Anchor, summary
from apps.provenance.conf import chain_config
from apps.provenance.models import AnchorBatch, BatchState
from workers.chain.keys import SignerConfigError, load_signer
from workers.ml.reporting import JobFailed


def run_anchor(ctx: JobContext) -> dict[str, Any]:
    """Record the batch's root on chain and wait until it is final (see the module docstring)."""
    cfg = chain_config()
    batch = AnchorBatch.objects.get(pk=ctx.params.batch_id)
    if batch.state == BatchState.FAILED:
        raise JobFailed(batch.error or f"batch {batch.pk} failed")
    if batch.state == BatchState.FINAL:
        return summary(batch)
    try:
        account = load_signer(os.environ)
    except SignerConfigError as exc:
        raise JobFailed(f"The signer has no usable key: {exc}") from None
    w3 = chain.connect(cfg)
    if int(w3.eth.chain_id) != cfg.chain_id:
        raise JobFailed(
            f"The node at CHAIN_RPC_URL serves chain {w3.eth.chain_id}, not {cfg.chain_id}"
        )
    return Anchor(ctx=ctx, cfg=cfg, w3=w3, account=account, batch=batch).run()
