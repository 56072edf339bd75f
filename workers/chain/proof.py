"""Proof documents: the JSON file an output carries to prove it was recorded on chain.

A document holds the output's SHA-256, its Merkle leaf and proof, the batch root, and where the
root was recorded (chain id, registry address, transaction). `verify_document` needs nothing but
the file, web3 and a node of that chain: it recomputes the leaf, walks the proof, and reads the
root's record from the registry *now*, so a document cannot vouch for a root the chain does not
hold. The transaction and block in the document are hints for a human; the chain's record is
the answer (after a reorganisation the same root can sit in another block).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import encode_hex, is_address, to_checksum_address

from workers.chain.contract import Registry
from workers.chain.merkle import leaf_for_sha256, verify_proof
from workers.chain.node import connect

VERSION = 1
KIND = "atelier.provenance.proof"
RULES = (
    "leaf = keccak256(32 bytes of the SHA-256); node = keccak256(smaller child || larger "
    "child); an odd level carries its last node up unchanged"
)

_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a proof document against the chain."""

    verified: bool
    reason: str
    block_number: int | None = None
    timestamp: int | None = None
    submitter: str | None = None


def _hex32(value: bytes | str, what: str) -> str:
    if isinstance(value, bytes | bytearray):
        if len(value) != 32:
            raise ValueError(f"{what} must be 32 bytes")
        return encode_hex(bytes(value))
    if isinstance(value, str) and _HEX32.fullmatch(value):
        return value.lower()
    raise ValueError(f"{what} must be 32 bytes or 0x-prefixed 64-digit hex")


def proof_document(
    *,
    sha256_hex: str,
    leaf: bytes,
    proof: Sequence[bytes],
    root: bytes,
    chain_id: int,
    contract: str,
    tx_hash: bytes | str,
    block_number: int,
    batch_count: int,
    leaf_index: int,
) -> dict[str, Any]:
    """The JSON-ready proof document (version 1) for one output; checks the proof first."""
    if leaf_for_sha256(sha256_hex) != leaf:
        raise ValueError("leaf is not leaf_for_sha256(sha256_hex)")
    if not verify_proof(leaf, list(proof), root):
        raise ValueError("the proof does not lead from the leaf to the root")
    if not 0 <= leaf_index < batch_count:
        raise ValueError("leaf_index must be in 0..batch_count-1")
    if not is_address(contract):
        raise ValueError("contract must be an address")
    return {
        "version": VERSION,
        "kind": KIND,
        "sha256": sha256_hex.lower(),
        "leaf": _hex32(leaf, "leaf"),
        "proof": [_hex32(p, "proof") for p in proof],
        "root": _hex32(root, "root"),
        "leaf_index": int(leaf_index),
        "batch_count": int(batch_count),
        "chain_id": int(chain_id),
        "contract": to_checksum_address(contract),
        "tx_hash": _hex32(tx_hash, "tx_hash"),
        "block_number": int(block_number),
        "rules": RULES,
    }


@dataclass(frozen=True)
class _Parsed:
    sha256_hex: str
    leaf: bytes
    proof: list[bytes]
    root: bytes
    chain_id: int
    contract: str
    batch_count: int
    block_number: int | None


def _parse(doc: Any) -> _Parsed:
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("version") != VERSION:
        raise ValueError(f"unsupported version {doc.get('version')!r} (this verifier reads 1)")

    def b32(value: Any, what: str) -> bytes:
        if not isinstance(value, str) or not _HEX32.fullmatch(value):
            raise ValueError(f"{what} is not 0x-prefixed 64-digit hex")
        return bytes.fromhex(value[2:])

    def integer(name: str) -> int:
        value = doc.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} is not a non-negative integer")
        return value

    sha = doc.get("sha256")
    if not isinstance(sha, str):
        raise ValueError("sha256 is missing")
    proof = doc.get("proof")
    if not isinstance(proof, list):
        raise ValueError("proof is not a list")
    contract = doc.get("contract")
    if not isinstance(contract, str) or not is_address(contract):
        raise ValueError("contract is not an address")
    block = doc.get("block_number")
    return _Parsed(
        sha256_hex=sha,
        leaf=b32(doc.get("leaf"), "leaf"),
        proof=[b32(p, f"proof[{i}]") for i, p in enumerate(proof)],
        root=b32(doc.get("root"), "root"),
        chain_id=integer("chain_id"),
        contract=to_checksum_address(contract),
        batch_count=integer("batch_count"),
        block_number=block if isinstance(block, int) else None,
    )


def _connect(w3: Any, rpc_url: str | None) -> Any:
    if w3 is not None:
        return w3
    if not rpc_url:
        raise ValueError("verify_document needs w3 or rpc_url")
    return connect(rpc_url)


def verify_document(
    doc: dict[str, Any],
    *,
    w3: Any = None,
    rpc_url: str | None = None,
    expected_submitter: str | None = None,
) -> Verification:
    """Check `doc` on its own and against the registry's record of its root on the chain now.

    `expected_submitter`, when given, must be the account that recorded the root (the Atelier
    instance a reader trusts): anyone may write to the registry."""
    try:
        p = _parse(doc)
        leaf = leaf_for_sha256(p.sha256_hex)
        if expected_submitter is not None and not is_address(expected_submitter):
            raise ValueError("expected_submitter is not an address")
    except ValueError as exc:
        return Verification(False, f"malformed document: {exc}")
    if leaf != p.leaf:
        return Verification(False, "the leaf is not the keccak256 of the document's SHA-256")
    if not verify_proof(leaf, p.proof, p.root):
        return Verification(False, "the proof does not lead from the leaf to the root")

    try:
        w3 = _connect(w3, rpc_url)
        chain_id = int(w3.eth.chain_id)
        if chain_id != p.chain_id:
            return Verification(
                False, f"the node serves chain {chain_id}, the document names chain {p.chain_id}"
            )
        registry = Registry(w3, p.contract)
        record, what = registry.root_record(p.root), "root"
        if record is None and not p.proof:
            # A one-item "batch" may have gone through recordHash: of the SHA-256 or the leaf.
            sha = bytes.fromhex(p.sha256_hex)
            record, what = registry.hash_record(sha), "hash"
            if record is None:
                record = registry.hash_record(leaf)
    except Exception as exc:  # the node is down, the address holds no registry, ...
        return Verification(False, f"could not read the registry: {type(exc).__name__}: {exc}")

    if record is None:
        return Verification(
            False, f"the root is not recorded by {p.contract} on chain {p.chain_id}"
        )
    found = Verification(False, "", record.block_number, record.timestamp, record.submitter)
    if what == "root" and record.count != p.batch_count:
        return _with(found, f"the chain records {record.count} items, the document {p.batch_count}")
    if expected_submitter and to_checksum_address(expected_submitter) != record.submitter:
        return _with(found, f"recorded by {record.submitter}, not {expected_submitter}")
    note = ""
    if p.block_number is not None and p.block_number != record.block_number:
        note = f" (the document says block {p.block_number})"
    return Verification(
        True,
        f"{what} recorded in block {record.block_number} by {record.submitter}{note}",
        record.block_number,
        record.timestamp,
        record.submitter,
    )


def _with(v: Verification, reason: str) -> Verification:
    return Verification(False, reason, v.block_number, v.timestamp, v.submitter)
