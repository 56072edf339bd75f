"""The provenance registry contract (contracts/ProvenanceRegistry.sol) seen from web3.

Reads (records, events) go through the node; writes are only *built* here as unsigned EIP-1559
transaction dicts, so the signer can sign, persist and broadcast them in the order its
crash-safety needs (workers/chain/keys.py signs). With `gas` given, building a transaction makes
no RPC call at all, and the same arguments give the same dict.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import encode_hex, to_checksum_address
from web3 import Web3

from workers.chain.keys import sign_tx

ARTIFACT = Path(__file__).resolve().parents[2] / "contracts" / "ProvenanceRegistry.json"

# An estimate is exact for the state it ran against; the margin covers a state that changes
# before inclusion (only unused gas is refunded, so the margin costs nothing when unused).
GAS_MARGIN = 1.2
# The registry's MAX_COUNT: the most items one root can carry (its record packs the count in 24
# bits). A batcher caps its batches here.
MAX_COUNT = 16_777_215
DEPLOY_TIMEOUT_S = 120.0


class AlreadyRecorded(Exception):
    """The registry already holds this root (or hash): recording it again would revert."""


@dataclass(frozen=True)
class RootRecord:
    """A record read from the registry: what was recorded, when and by whom."""

    count: int
    block_number: int
    timestamp: int
    submitter: str


@functools.cache
def _artifact_text() -> str:
    return ARTIFACT.read_text(encoding="utf-8")


def load_artifact() -> dict[str, Any]:
    """The compiled contract: abi, bytecode, deployedBytecode, compiler version and settings."""
    return json.loads(_artifact_text())


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes")
    return bytes(value)


def deploy_registry(w3: Web3, *, account: Any) -> str:
    """Deploy a fresh registry from `account` (a LocalAccount); return its checksum address."""
    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor().build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    raw, _ = sign_tx(account, dict(tx))
    tx_hash = w3.eth.send_raw_transaction(raw)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=DEPLOY_TIMEOUT_S)
    address = receipt.get("contractAddress")
    if receipt["status"] != 1 or not address:
        raise RuntimeError(f"registry deployment failed in transaction {encode_hex(tx_hash)}")
    return to_checksum_address(address)


class Registry:
    """One deployed registry at `address` on the chain `w3` talks to."""

    def __init__(self, w3: Web3, address: str):
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])

    # ------------------------------------------------------------------ reads

    def root_record(self, root: bytes) -> RootRecord | None:
        """The record of a Merkle root, or None when it was never recorded."""
        fn = self.contract.functions.rootRecord(_bytes32(root, "root"))
        return _record(fn.call())

    def hash_record(self, h: bytes) -> RootRecord | None:
        """The record of a single hash (count 1), or None when it was never recorded."""
        fn = self.contract.functions.hashRecord(_bytes32(h, "hash"))
        return _record(fn.call())

    def verify(self, root: bytes, leaf: bytes, proof: list[bytes]) -> bool:
        """The contract's own proof check (an eth_call; no transaction)."""
        fn = self.contract.functions.verify(
            _bytes32(root, "root"), _bytes32(leaf, "leaf"), [_bytes32(p, "proof") for p in proof]
        )
        return bool(fn.call())

    def find_root_events(
        self, root: bytes, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[dict[str, Any]]:
        """RootRecorded events for `root`, from the chain's logs alone (no database). Public
        nodes cap the block range of one query: pass the range the record's block is in."""
        return self._events("RootRecorded", _bytes32(root, "root"), from_block, to_block)

    def find_hash_events(
        self, h: bytes, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[dict[str, Any]]:
        """HashRecorded events for a single `h`, from the chain's logs alone."""
        return self._events("HashRecorded", _bytes32(h, "hash"), from_block, to_block)

    def _events(
        self, name: str, key: bytes, from_block: int, to_block: int | str
    ) -> list[dict[str, Any]]:
        event = getattr(self.contract.events, name)()
        logs = self.w3.eth.get_logs(
            {
                "address": self.address,
                "topics": [event.topic, encode_hex(key)],
                "fromBlock": from_block,
                "toBlock": to_block,  # type: ignore[typeddict-item]
            }
        )
        out = []
        for log in logs:
            decoded = event.process_log(log)
            args = decoded["args"]
            out.append(
                {
                    "event": name,
                    "key": encode_hex(key),
                    "count": int(args.get("count", 1)),
                    "submitter": to_checksum_address(args["submitter"]),
                    "tx_hash": encode_hex(log["transactionHash"]),
                    "block_number": int(log["blockNumber"]),
                    "block_hash": encode_hex(log["blockHash"]),
                    "log_index": int(log["logIndex"]),
                }
            )
        return out

    # ------------------------------------------------------------------ unsigned writes

    def record_root_tx(
        self,
        root: bytes,
        count: int,
        *,
        sender: str,
        nonce: int,
        chain_id: int,
        max_fee_per_gas: int,
        max_priority_fee_per_gas: int,
        gas: int | None = None,
    ) -> dict[str, Any]:
        """An unsigned EIP-1559 `recordRoot(root, count)` transaction (gas estimated if None)."""
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(
                f"count must be between 1 and {MAX_COUNT:,} (the registry's MAX_COUNT)"
            )
        data = self.contract.encode_abi("recordRoot", args=[_bytes32(root, "root"), count])
        return self._tx(
            data,
            sender=sender,
            nonce=nonce,
            chain_id=chain_id,
            max_fee_per_gas=max_fee_per_gas,
            max_priority_fee_per_gas=max_priority_fee_per_gas,
            gas=gas,
        )

    def record_hash_tx(
        self,
        h: bytes,
        *,
        sender: str,
        nonce: int,
        chain_id: int,
        max_fee_per_gas: int,
        max_priority_fee_per_gas: int,
        gas: int | None = None,
    ) -> dict[str, Any]:
        """An unsigned EIP-1559 `recordHash(h)` transaction (gas estimated if None)."""
        data = self.contract.encode_abi("recordHash", args=[_bytes32(h, "hash")])
        return self._tx(
            data,
            sender=sender,
            nonce=nonce,
            chain_id=chain_id,
            max_fee_per_gas=max_fee_per_gas,
            max_priority_fee_per_gas=max_priority_fee_per_gas,
            gas=gas,
        )

    def _tx(
        self,
        data: str,
        *,
        sender: str,
        nonce: int,
        chain_id: int,
        max_fee_per_gas: int,
        max_priority_fee_per_gas: int,
        gas: int | None,
    ) -> dict[str, Any]:
        if max_priority_fee_per_gas > max_fee_per_gas:
            raise ValueError("max_priority_fee_per_gas exceeds max_fee_per_gas")
        sender = to_checksum_address(sender)
        if gas is None:
            try:
                estimate = self.w3.eth.estimate_gas(
                    {"from": sender, "to": self.address, "data": data}  # type: ignore[typeddict-item]
                )
            except Exception as exc:
                # A node answers a revert with ContractLogicError; eth-tester raises its own
                # TransactionFailed. The contract's reason is the same text in both.
                if "already recorded" in str(exc):
                    raise AlreadyRecorded(str(exc)) from exc
                raise
            gas = int(estimate * GAS_MARGIN)
        return {
            "type": 2,
            "chainId": chain_id,
            "nonce": nonce,
            "from": sender,
            "to": self.address,
            "value": 0,
            "data": data,
            "gas": gas,
            "maxFeePerGas": max_fee_per_gas,
            "maxPriorityFeePerGas": max_priority_fee_per_gas,
        }


def _record(values: Any) -> RootRecord | None:
    count, block_number, timestamp, submitter = values
    if count == 0:
        return None
    return RootRecord(
        count=int(count),
        block_number=int(block_number),
        timestamp=int(timestamp),
        submitter=to_checksum_address(submitter),
    )
