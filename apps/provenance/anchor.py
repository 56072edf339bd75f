"""The anchor state machine (apps/provenance/runners.py runs it; the module docstring there says
what each state does). One `Anchor` is one attempt at one batch; the batch row is the state."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from django.utils import timezone
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound

from apps.jobs.registry import JobContext
from apps.provenance import chain, transitions
from apps.provenance.conf import ChainConfig
from apps.provenance.models import AnchorBatch, BatchState
from workers.chain.contract import AlreadyRecorded, Registry
from workers.chain.keys import sign_tx
from workers.ml.reporting import JobCancelled, JobFailed

log = logging.getLogger(__name__)

# Fault injection for the tests (tests/integration/test_provenance_chain.py): with
# ATELIER_CHAIN_CRASH_AT set to one of these, the signer process dies (exit 137, as a kill -9
# would) at that point. It reads only the environment; unset, it does nothing.
CRASH_POINTS = ("before_sign", "after_sign", "after_persist", "after_send", "after_receipt")
# What nodes answer when a raw transaction is already in the pool or already mined, or when a
# replacement did not outbid the one pending: the receipts tell what happened.
BENIGN_SEND_ERRORS = (
    "already known",
    "known transaction",
    "already imported",
    "already exists",
    "nonce too low",
    "invalid transaction nonce",
    "underpriced",
)
FEE_BUMP = (1125, 1000)  # replacements: at least +12.5 % (geth and anvil want +10 %)
NODE_RETRIES = 10  # consecutive node failures (back-off up to 30 s) before the job gives up
ORDER = (BatchState.CLOSED, BatchState.SIGNED, BatchState.SENT, BatchState.MINED)


def crash_point(name: str) -> None:
    """Die here when ATELIER_CHAIN_CRASH_AT names this point (tests only)."""
    if os.environ.get("ATELIER_CHAIN_CRASH_AT") == name:
        log.warning("ATELIER_CHAIN_CRASH_AT=%s: exiting now (fault injection)", name)
        os._exit(137)


def summary(batch: AnchorBatch) -> dict[str, Any]:
    return {
        "batch_id": batch.pk,
        "state": batch.state,
        "root": batch.root,
        "count": batch.count,
        "chain_id": batch.chain_id,
        "contract": batch.contract,
        "tx_hash": batch.tx_hash,
        "block_number": batch.block_number,
        "nonce": batch.nonce,
        "replacements": batch.replacements,
        "gas_used": batch.gas_used,
    }


def _bumped(old: int | None, floor: int) -> int:
    return max((old or 0) * FEE_BUMP[0] // FEE_BUMP[1] + 1, floor)


class Anchor:
    """One attempt at one batch. Each handler does one step or one poll and says whether the
    batch moved; the loop reloads the row every time (the row, not this object, is the state)."""

    def __init__(self, *, ctx: JobContext, cfg: ChainConfig, w3: Web3, account, batch):
        self.ctx = ctx
        self.reporter = ctx.reporter
        self.cfg = cfg
        self.w3 = w3
        self.account = account
        self.registry = Registry(w3, batch.contract)
        self.batch_id = batch.pk
        self.root = batch.root_bytes
        self.total = len(ORDER) + cfg.confirmations

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        failures = 0
        while True:
            batch = AnchorBatch.objects.get(pk=self.batch_id)
            if batch.state == BatchState.FINAL:
                self.reporter.step(self.total, self.total)
                return summary(batch)
            if batch.state == BatchState.FAILED:
                raise JobFailed(batch.error)
            if self.reporter.should_stop():
                raise JobCancelled()
            try:
                moved = self.advance(batch)
                failures = 0
            except OSError as exc:  # the node is unreachable or timed out: wait and try again
                failures += 1
                if failures > NODE_RETRIES:
                    raise
                self.say(f"the node did not answer ({type(exc).__name__}); retrying", "warning")
                time.sleep(min(2**failures, 30) * self.cfg.poll)
                continue
            if not moved:
                time.sleep(self.cfg.poll)

    def advance(self, batch: AnchorBatch) -> bool:
        if batch.state == BatchState.SENT:
            return self.await_receipt(batch)
        if batch.state == BatchState.MINED:
            return self.confirm(batch)
        if self.adopt(batch):
            return True
        if batch.state == BatchState.CLOSED:
            return self.sign(batch)
        return self.send(batch)

    def say(self, message: str, level: str = "info", state: str | None = None) -> None:
        self.reporter.log(f"batch {self.batch_id}: {message}", level)
        if state is not None:
            self.progress(state)

    def progress(self, state: str, confirmations: int = 0) -> None:
        step = ORDER.index(state) if state in ORDER else self.total
        if state == BatchState.MINED:
            step += min(confirmations, self.cfg.confirmations)
        self.reporter.step(step, self.total)

    # ------------------------------------------------------------------ any state: adopt
    def adopt(self, batch: AnchorBatch) -> bool:
        """The registry already holds the root: take its transaction and block."""
        record = self.registry.root_record(self.root)
        if record is None:
            return False
        events = self.registry.find_root_events(self.root, from_block=record.block_number)
        event = events[0] if events else {}
        tx_hash = event.get("tx_hash", "")
        ours = tx_hash in batch.tx_hashes
        if batch.state == BatchState.SIGNED and not ours:
            # Our signed transaction holds a nonce: send it anyway (it reverts) so later nonces
            # are not stuck behind a gap.
            self.broadcast(batch.raw_tx)
        block = self.w3.eth.get_block(record.block_number)
        receipt = self.receipt(tx_hash) if ours else None
        gas_used = receipt["gasUsed"] if receipt is not None else None
        moved = transitions.batch_move(
            batch_id=self.batch_id,
            sources=(BatchState.CLOSED, BatchState.SIGNED, BatchState.SENT),
            target=BatchState.MINED,
            tx_hash=tx_hash,
            block_number=record.block_number,
            block_hash=Web3.to_hex(block["hash"]),
            gas_used=gas_used,
            mined_at=timezone.now(),
            confirmations=0,
        )
        if moved:
            whose = (
                "our transaction" if ours else f"transaction {tx_hash or '?'} of {record.submitter}"
            )
            self.say(
                f"root already recorded in block {record.block_number} by {whose}; adopted",
                state=BatchState.MINED,
            )
        return True

    # ------------------------------------------------------------------ closed → signed
    def sign(self, batch: AnchorBatch) -> bool:
        crash_point("before_sign")
        sender = self.account.address
        fees = chain.fees_now(self.w3)
        try:
            gas = batch.gas_limit or self.unsigned(batch, nonce=0, fees=fees, gas=None)["gas"]
        except AlreadyRecorded:
            return True  # recorded meanwhile: adopted next round
        chain_next = self.w3.eth.get_transaction_count(sender, "pending")

        def sign(nonce: int) -> dict[str, Any]:
            raw, tx_hash = sign_tx(
                self.account, self.unsigned(batch, nonce=nonce, fees=fees, gas=gas)
            )
            crash_point("after_sign")
            return {"raw_tx": Web3.to_hex(raw), "tx_hash": tx_hash, "gas_limit": gas, **fees}

        try:
            signed = transitions.batch_sign(
                batch_id=self.batch_id,
                sender=sender,
                chain_id=self.cfg.chain_id,
                chain_next=chain_next,
                sign=sign,
            )
        except transitions.BatchConflict:
            return True
        crash_point("after_persist")
        gwei = signed["max_fee_per_gas"] / 1e9
        self.say(
            f"signed transaction {signed['tx_hash']} (nonce {signed['nonce']}, max fee "
            f"{gwei:.3f} gwei) and saved it before sending",
            state=BatchState.SIGNED,
        )
        return True

    def unsigned(self, batch: AnchorBatch, *, nonce: int, fees: dict, gas: int | None) -> dict:
        return self.registry.record_root_tx(
            self.root,
            batch.count,
            sender=self.account.address,
            nonce=nonce,
            chain_id=self.cfg.chain_id,
            gas=gas,
            **fees,
        )

    # ------------------------------------------------------------------ signed → sent
    def broadcast(self, raw_tx: str) -> str:
        """Send a stored raw transaction; '' when sent, else the node's benign refusal."""
        try:
            self.w3.eth.send_raw_transaction(raw_tx)
        except Exception as exc:
            text = str(exc).lower()
            if any(answer in text for answer in BENIGN_SEND_ERRORS):
                return str(exc)[:200]
            raise
        return ""

    def send(self, batch: AnchorBatch) -> bool:
        answer = self.broadcast(batch.raw_tx)
        crash_point("after_send")
        transitions.batch_move(
            batch_id=self.batch_id,
            sources=(BatchState.SIGNED,),
            target=BatchState.SENT,
            sent_at=timezone.now(),
        )
        note = f" (the node answered: {answer}; checking receipts)" if answer else ""
        self.say(f"sent transaction {batch.tx_hash}{note}", state=BatchState.SENT)
        return True

    # ------------------------------------------------------------------ sent → mined
    def receipt(self, tx_hash: str) -> Any:
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def mined_receipt(self, batch: AnchorBatch) -> Any:
        """The receipt of whichever of the batch's transactions (replacements too) was mined."""
        for tx_hash in reversed(batch.tx_hashes):
            found = self.receipt(tx_hash)
            if found is not None and found.get("blockNumber") is not None:
                return found
        return None

    def await_receipt(self, batch: AnchorBatch) -> bool:
        receipt = self.mined_receipt(batch)
        if receipt is not None:
            crash_point("after_receipt")
            if receipt["status"] != 1:
                return self.adopt(batch) or self.fail(batch, receipt)
            return self.mark_mined(receipt)
        if self.adopt(batch):
            return True
        if self.nonce_lost(batch):
            return True
        waited = (timezone.now() - (batch.sent_at or batch.signed_at)).total_seconds()
        if waited >= self.cfg.replace_after:
            return self.replace(batch, waited)
        return False

    def mark_mined(self, receipt: Any) -> bool:
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        moved = transitions.batch_move(
            batch_id=self.batch_id,
            sources=(BatchState.SENT,),
            target=BatchState.MINED,
            tx_hash=tx_hash,
            block_number=receipt["blockNumber"],
            block_hash=Web3.to_hex(receipt["blockHash"]),
            gas_used=receipt["gasUsed"],
            mined_at=timezone.now(),
            confirmations=0,
        )
        if moved:
            self.say(
                f"mined in block {receipt['blockNumber']} (transaction {tx_hash}, "
                f"{receipt['gasUsed']} gas)",
                state=BatchState.MINED,
            )
        return True

    def fail(self, batch: AnchorBatch, receipt: Any) -> bool:
        reason = self.revert_reason(receipt)
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        error = f"Transaction {tx_hash} reverted in block {receipt['blockNumber']}: {reason}"
        if transitions.batch_move(
            batch_id=self.batch_id,
            sources=(BatchState.SENT,),
            target=BatchState.FAILED,
            tx_hash=tx_hash,
            block_number=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            error=error,
        ):
            self.say(error, "error")
        return True

    def revert_reason(self, receipt: Any) -> str:
        """The revert message, from replaying the call just before its block (best effort)."""
        try:
            tx = self.w3.eth.get_transaction(receipt["transactionHash"])
            call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]}
            self.w3.eth.call(call, max(receipt["blockNumber"] - 1, 0))
        except Exception as exc:  # noqa: BLE001 - the message is what we want
            return str(exc)[:500] or type(exc).__name__
        return "reverted (status 0) without a reason"

    def nonce_lost(self, batch: AnchorBatch) -> bool:
        """Another transaction of this key took the batch's nonce (the key used elsewhere): sign
        again with a new nonce. Checked twice around the count so a receipt racing in wins."""
        mined = self.w3.eth.get_transaction_count(batch.sender, "latest")
        if batch.nonce is None or mined <= batch.nonce or self.mined_receipt(batch) is not None:
            return False
        if transitions.batch_move(
            batch_id=self.batch_id,
            sources=(BatchState.SENT,),
            target=BatchState.CLOSED,
            nonce=None,
            raw_tx="",
            tx_hash="",
        ):
            self.say(
                f"nonce {batch.nonce} was used by another transaction of {batch.sender}; "
                "signing again with a new nonce",
                "warning",
                state=BatchState.CLOSED,
            )
        return True

    def replace(self, batch: AnchorBatch, waited: float) -> bool:
        fees = chain.fees_now(self.w3)
        fees = {
            "max_priority_fee_per_gas": _bumped(
                batch.max_priority_fee_per_gas, fees["max_priority_fee_per_gas"]
            ),
            "max_fee_per_gas": _bumped(batch.max_fee_per_gas, fees["max_fee_per_gas"]),
        }
        fees["max_fee_per_gas"] = max(fees["max_fee_per_gas"], fees["max_priority_fee_per_gas"])
        tx = self.unsigned(batch, nonce=batch.nonce, fees=fees, gas=batch.gas_limit)
        raw, tx_hash = sign_tx(self.account, tx)
        fields = {"raw_tx": Web3.to_hex(raw), "tx_hash": tx_hash, **fees}
        if transitions.batch_replace(
            batch_id=self.batch_id, old_tx_hash=batch.tx_hash, fields=fields
        ):
            self.say(
                f"no receipt after {waited:.0f} s: replacing it with {tx_hash} (same nonce "
                f"{batch.nonce}, max fee {fees['max_fee_per_gas'] / 1e9:.3f} gwei; replacement "
                f"{batch.replacements + 1})",
                "warning",
                state=BatchState.SIGNED,
            )
        return True

    # ------------------------------------------------------------------ mined → final
    def confirm(self, batch: AnchorBatch) -> bool:
        head = self.w3.eth.block_number
        try:
            block_hash = Web3.to_hex(self.w3.eth.get_block(batch.block_number)["hash"])
        except BlockNotFound:
            block_hash = ""
        if block_hash != batch.block_hash:
            return self.reorganised(batch)
        # Confirmations as block explorers count them: the block that holds the transaction is
        # the first, each block on top one more.
        depth = max(head - batch.block_number + 1, 0)
        if depth >= self.cfg.confirmations:
            if transitions.batch_finalize(batch_id=self.batch_id, confirmations=depth):
                self.say(
                    f"final: {depth} confirmations (block {batch.block_number} and "
                    f"{depth - 1} on top); {batch.count} hashes recorded",
                    state=BatchState.FINAL,
                )
            return True
        if depth != batch.confirmations:
            AnchorBatch.objects.filter(pk=self.batch_id, state=BatchState.MINED).update(
                confirmations=depth
            )
            self.say(f"{depth} of {self.cfg.confirmations} confirmations")
            self.progress(BatchState.MINED, depth)
        return False

    def reorganised(self, batch: AnchorBatch) -> bool:
        if transitions.batch_move(
            batch_id=self.batch_id,
            sources=(BatchState.MINED,),
            target=BatchState.SENT,
            block_number=None,
            block_hash="",
            confirmations=0,
            mined_at=None,
            sent_at=timezone.now(),
        ):
            self.say(
                f"block {batch.block_number} changed (chain reorganisation): waiting for the "
                "transaction's new receipt",
                "warning",
                state=BatchState.SENT,
            )
        return True
