"""The registry contract: its committed artifact against a fresh compile, then its behaviour on
an in-process chain (eth-tester + py-evm), read through workers/chain alone."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from workers.chain.contract import (
    ARTIFACT,
    AlreadyRecorded,
    Registry,
    deploy_registry,
    load_artifact,
)
from workers.chain.keys import load_signer, sign_tx
from workers.chain.merkle import build_tree, leaf_for_sha256, verify_proof
from workers.chain.proof import proof_document, verify_document

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
SOURCE = CONTRACTS / "ProvenanceRegistry.sol"
SIGNER_KEY = "0x" + "5e" * 32
FEES = {"max_fee_per_gas": 3 * 10**9, "max_priority_fee_per_gas": 10**9}
# One storage slot and one event: about 46k gas (STACK-NOTES); two slots would be ~68k.
GAS_CEILING = 48_000


def _reverts(reason: str):
    """A revert seen through web3: ContractLogicError from a node, TransactionFailed from
    eth-tester; both carry the contract's reason."""
    from eth_tester.exceptions import TransactionFailed
    from web3.exceptions import ContractLogicError

    return pytest.raises((ContractLogicError, TransactionFailed), match=reason)


def _sha(i: int | str) -> str:
    return hashlib.sha256(f"output {i}".encode()).hexdigest()


# ---- (a) the artifact is what the pinned compiler makes of the source ---------------------------


def _compile_fresh() -> dict:
    node = shutil.which("node")
    missing = [
        what
        for what, ok in (
            ("node", node is not None),
            (
                "contracts/node_modules (npm ci --prefix contracts)",
                (CONTRACTS / "node_modules" / "solc").is_dir(),
            ),
        )
        if not ok
    ]
    if missing:
        message = f"cannot recompile the registry: {', '.join(missing)} missing"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the artifact check must run)")
        pytest.skip(message)
    out = subprocess.run(
        [node, str(CONTRACTS / "compile.js"), "--stdout"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_committed_artifact_is_a_fresh_compile_of_the_source():
    fresh = _compile_fresh()
    committed = load_artifact()

    assert fresh["abi"] == committed["abi"]
    assert fresh["bytecode"] == committed["bytecode"]
    assert fresh["deployedBytecode"] == committed["deployedBytecode"]
    assert fresh["compiler"] == committed["compiler"]
    assert fresh == committed


def test_the_artifact_names_its_source_hash_and_pinned_compiler():
    artifact = load_artifact()
    pinned = json.loads((CONTRACTS / "package.json").read_text())["devDependencies"]["solc"]

    assert ARTIFACT == CONTRACTS / "ProvenanceRegistry.json"
    assert artifact["sourceSha256"] == hashlib.sha256(SOURCE.read_bytes()).hexdigest(), (
        "ProvenanceRegistry.sol changed: run `node contracts/compile.js`"
    )
    assert artifact["compiler"]["version"].startswith(pinned + "+commit.")
    assert f"pragma solidity {pinned};" in SOURCE.read_text()
    assert artifact["compiler"]["settings"]["optimizer"] == {"enabled": True, "runs": 200}


# ---- (b) behaviour on an in-process chain ------------------------------------------------------


@pytest.fixture(scope="module")
def w3():
    pytest.importorskip("eth_tester", reason="eth-tester[py-evm] (the dev extras) is not installed")
    from web3 import EthereumTesterProvider, Web3

    w3 = Web3(EthereumTesterProvider())
    signer = load_signer({"CHAIN_PRIVATE_KEY": SIGNER_KEY})
    funder = w3.eth.accounts[0]
    tx = w3.eth.send_transaction({"from": funder, "to": signer.address, "value": 10**20})
    w3.eth.wait_for_transaction_receipt(tx)
    return w3


@pytest.fixture(scope="module")
def signer():
    return load_signer({"CHAIN_PRIVATE_KEY": SIGNER_KEY})


@pytest.fixture
def registry(w3, signer):
    return Registry(w3, deploy_registry(w3, account=signer))


def _send(w3, signer, tx: dict) -> dict:
    raw, tx_hash = sign_tx(signer, tx)
    assert w3.eth.send_raw_transaction(raw).to_0x_hex() == tx_hash
    return dict(w3.eth.wait_for_transaction_receipt(tx_hash))


def _record_root(w3, signer, registry, root: bytes, count: int, **kw) -> dict:
    tx = registry.record_root_tx(
        root,
        count,
        sender=signer.address,
        nonce=w3.eth.get_transaction_count(signer.address),
        chain_id=w3.eth.chain_id,
        **FEES,
        **kw,
    )
    return _send(w3, signer, tx)


def test_it_records_a_root_with_its_count_block_time_and_submitter(w3, signer, registry):
    root = build_tree([leaf_for_sha256(_sha(i)) for i in range(5)]).root

    receipt = _record_root(w3, signer, registry, root, 5)

    assert receipt["status"] == 1
    assert receipt["gasUsed"] <= GAS_CEILING
    block = w3.eth.get_block(receipt["blockNumber"])
    record = registry.root_record(root)
    assert record is not None
    assert (record.count, record.block_number, record.timestamp, record.submitter) == (
        5,
        receipt["blockNumber"],
        block["timestamp"],
        signer.address,
    )


def test_an_unrecorded_root_has_no_record(registry):
    assert registry.root_record(b"\x42" * 32) is None
    assert registry.hash_record(b"\x42" * 32) is None


def test_recording_a_root_twice_reverts_with_a_clear_reason(w3, signer, registry):
    root = build_tree([leaf_for_sha256(_sha("dup"))]).root
    assert _record_root(w3, signer, registry, root, 1)["status"] == 1

    with pytest.raises(AlreadyRecorded, match="root already recorded"):
        _record_root(w3, signer, registry, root, 1)
    with _reverts("ProvenanceRegistry: root already recorded"):
        registry.contract.functions.recordRoot(root, 1).call({"from": w3.eth.accounts[1]})
    # Sent anyway (a retry with a fixed gas limit): mined, reverted, the record unchanged.
    first = registry.root_record(root)
    receipt = _record_root(w3, signer, registry, root, 1, gas=100_000)
    assert receipt["status"] == 0
    assert registry.root_record(root) == first


@pytest.mark.parametrize(
    ("root", "count", "reason"),
    [
        (b"\x00" * 32, 1, "zero root"),
        (b"\x01" * 32, 0, "count out of range"),
        (b"\x01" * 32, 2**24, "count out of range"),
    ],
    ids=["zero-root", "zero-count", "count-past-max"],
)
def test_it_rejects_a_zero_root_and_counts_out_of_range(w3, registry, root, count, reason):
    with _reverts(reason):
        registry.contract.functions.recordRoot(root, count).call({"from": w3.eth.accounts[0]})


def test_record_root_tx_refuses_a_count_the_contract_would_reject(registry, signer):
    with pytest.raises(ValueError, match="count"):
        registry.record_root_tx(
            b"\x01" * 32, 0, sender=signer.address, nonce=0, chain_id=1, gas=60_000, **FEES
        )


def test_it_records_a_single_hash_once(w3, signer, registry):
    sha = bytes.fromhex(_sha("single"))

    def tx(**kw):
        return registry.record_hash_tx(
            sha,
            sender=signer.address,
            nonce=w3.eth.get_transaction_count(signer.address),
            chain_id=w3.eth.chain_id,
            **FEES,
            **kw,
        )

    receipt = _send(w3, signer, tx())

    assert receipt["status"] == 1
    assert receipt["gasUsed"] <= GAS_CEILING
    record = registry.hash_record(sha)
    assert record is not None
    assert (record.count, record.block_number, record.submitter) == (
        1,
        receipt["blockNumber"],
        signer.address,
    )
    assert registry.root_record(sha) is None  # roots and single hashes are separate records
    with pytest.raises(AlreadyRecorded, match="hash already recorded"):
        tx()
    [event] = registry.find_hash_events(sha)
    assert event["tx_hash"] == receipt["transactionHash"].to_0x_hex()


def test_events_are_found_from_the_chain_logs_alone(w3, signer, registry):
    root_a = build_tree([leaf_for_sha256(_sha(i)) for i in range(3)]).root
    root_b = build_tree([leaf_for_sha256(_sha(i)) for i in range(4)]).root
    receipt_a = _record_root(w3, signer, registry, root_a, 3)
    _record_root(w3, signer, registry, root_b, 4)

    # A fresh object with nothing but the chain and the address, as a stranger would have.
    stranger = Registry(w3, registry.address.lower())
    [event] = stranger.find_root_events(root_a)

    assert event["tx_hash"] == receipt_a["transactionHash"].to_0x_hex()
    assert event["block_number"] == receipt_a["blockNumber"]
    assert event["block_hash"] == receipt_a["blockHash"].to_0x_hex()
    assert (event["count"], event["submitter"]) == (3, signer.address)
    assert stranger.find_root_events(root_a, from_block=receipt_a["blockNumber"] + 1) == []
    assert stranger.find_root_events(b"\x77" * 32) == []


def test_the_contracts_verify_agrees_with_the_python_verifier(registry):
    rng = random.Random(7)
    for n in (1, 2, 3, 4, 5, 7, 8, 13, 33):
        leaves = [leaf_for_sha256(rng.randbytes(32).hex()) for _ in range(n)]
        tree = build_tree(leaves)
        for i in sorted({0, n // 2, n - 1}):
            proof = tree.proof(i)
            assert registry.verify(tree.root, leaves[i], proof) is True
            assert verify_proof(leaves[i], proof, tree.root) is True
            wrong_leaf = leaf_for_sha256(rng.randbytes(32).hex())
            assert registry.verify(tree.root, wrong_leaf, proof) is False
            assert verify_proof(wrong_leaf, proof, tree.root) is False
            if proof:
                tampered = [bytes(32), *proof[1:]]
                assert registry.verify(tree.root, leaves[i], tampered) is False
                assert verify_proof(leaves[i], tampered, tree.root) is False


def test_a_built_transaction_with_gas_needs_no_node():
    from web3 import Web3

    offline = Web3(Web3.HTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 0.5}))
    registry = Registry(offline, "0x" + "11" * 20)
    kw = dict(sender="0x" + "22" * 20, nonce=7, chain_id=31337, gas=60_000, **FEES)

    tx = registry.record_root_tx(b"\x01" * 32, 10, **kw)

    assert tx == registry.record_root_tx(b"\x01" * 32, 10, **kw)
    assert (tx["type"], tx["nonce"], tx["chainId"], tx["gas"], tx["value"]) == (
        2,
        7,
        31337,
        60_000,
        0,
    )
    assert tx["to"] == registry.address
    assert tx["data"].startswith("0x")


# ---- proof documents against this chain --------------------------------------------------------


def _recorded_batch(w3, signer, registry, n: int, tag: str):
    shas = [_sha(f"{tag}-{i}") for i in range(n)]
    tree = build_tree([leaf_for_sha256(s) for s in shas])
    receipt = _record_root(w3, signer, registry, tree.root, n)
    return shas, tree, receipt


def _document(w3, registry, shas, tree, receipt, i: int) -> dict:
    return proof_document(
        sha256_hex=shas[i],
        leaf=tree.leaves[i],
        proof=tree.proof(i),
        root=tree.root,
        chain_id=w3.eth.chain_id,
        contract=registry.address,
        tx_hash=receipt["transactionHash"],
        block_number=receipt["blockNumber"],
        batch_count=len(shas),
        leaf_index=i,
    )


def test_a_proof_document_verifies_against_the_root_on_chain(w3, signer, registry):
    shas, tree, receipt = _recorded_batch(w3, signer, registry, 6, "doc")

    doc = json.loads(json.dumps(_document(w3, registry, shas, tree, receipt, 4)))
    result = verify_document(doc, w3=w3)

    assert result.verified, result.reason
    assert (result.block_number, result.submitter) == (receipt["blockNumber"], signer.address)
    assert result.timestamp == w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert verify_document(doc, w3=w3, expected_submitter=signer.address).verified
    assert doc["version"] == 1 and doc["sha256"] == shas[4]


def test_a_document_fails_when_tampered_unrecorded_or_on_another_chain(w3, signer, registry):
    shas, tree, receipt = _recorded_batch(w3, signer, registry, 5, "bad")
    doc = _document(w3, registry, shas, tree, receipt, 1)
    unrecorded = build_tree([leaf_for_sha256(_sha(f"never-{i}")) for i in range(5)])
    never = proof_document(
        **{
            **{k: doc[k] for k in ("chain_id", "contract", "tx_hash", "block_number")},
            "sha256_hex": _sha("never-1"),
            "leaf": unrecorded.leaves[1],
            "proof": unrecorded.proof(1),
            "root": unrecorded.root,
            "batch_count": 5,
            "leaf_index": 1,
        }
    )

    cases = {
        "other output": ({**doc, "sha256": shas[2]}, "leaf is not"),
        "leaf swapped": ({**doc, "sha256": shas[2], "leaf": tree.leaves[2].hex()}, "malformed"),
        "proof tampered": (
            {**doc, "proof": ["0x" + "00" * 32, *doc["proof"][1:]]},
            "does not lead",
        ),
        "unrecorded root": (never, "not recorded"),
        "other chain": ({**doc, "chain_id": doc["chain_id"] + 1}, "serves chain"),
        "count lies": ({**doc, "batch_count": 6}, "records 5 items"),
        "version 2": ({**doc, "version": 2}, "unsupported version"),
        "not a dict": ([], "malformed"),
    }
    for name, (bad, reason) in cases.items():
        result = verify_document(bad, w3=w3)
        assert not result.verified, name
        assert reason in result.reason, (name, result.reason)
    other = verify_document(doc, w3=w3, expected_submitter="0x" + "ab" * 20)
    assert not other.verified and "recorded by" in other.reason


def test_a_document_for_a_single_recorded_hash_verifies(w3, signer, registry):
    sha = _sha("alone")
    tx = registry.record_hash_tx(
        bytes.fromhex(sha),
        sender=signer.address,
        nonce=w3.eth.get_transaction_count(signer.address),
        chain_id=w3.eth.chain_id,
        **FEES,
    )
    receipt = _send(w3, signer, tx)
    leaf = leaf_for_sha256(sha)

    doc = proof_document(
        sha256_hex=sha,
        leaf=leaf,
        proof=[],
        root=leaf,
        chain_id=w3.eth.chain_id,
        contract=registry.address,
        tx_hash=receipt["transactionHash"],
        block_number=receipt["blockNumber"],
        batch_count=1,
        leaf_index=0,
    )
    result = verify_document(doc, w3=w3)

    assert result.verified, result.reason
    assert result.reason.startswith("hash recorded")


def test_proof_document_refuses_a_proof_that_does_not_hold():
    tree = build_tree([leaf_for_sha256(_sha(i)) for i in range(3)])
    base = dict(
        chain_id=1,
        contract="0x" + "11" * 20,
        tx_hash="0x" + "22" * 32,
        block_number=1,
        batch_count=3,
        leaf_index=0,
    )

    with pytest.raises(ValueError, match="leaf"):
        proof_document(
            sha256_hex=_sha(1), leaf=tree.leaves[0], proof=tree.proof(0), root=tree.root, **base
        )
    with pytest.raises(ValueError, match="proof"):
        proof_document(
            sha256_hex=_sha(0), leaf=tree.leaves[0], proof=tree.proof(1), root=tree.root, **base
        )


def test_an_unreachable_node_is_reported_not_raised():
    tree = build_tree([leaf_for_sha256(_sha(i)) for i in range(2)])
    doc = proof_document(
        sha256_hex=_sha(0),
        leaf=tree.leaves[0],
        proof=tree.proof(0),
        root=tree.root,
        chain_id=31337,
        contract="0x" + "11" * 20,
        tx_hash="0x" + "22" * 32,
        block_number=1,
        batch_count=2,
        leaf_index=0,
    )

    result = verify_document(doc, rpc_url="http://127.0.0.1:9")

    assert not result.verified
    assert result.reason.startswith("could not read the registry")


# ---- the stand-alone CLI -----------------------------------------------------------------------


def test_the_cli_reports_an_unreadable_document_as_a_usage_error(tmp_path, capsys):
    from workers.chain.verify import main

    (tmp_path / "broken.json").write_text("{not json")

    assert main([str(tmp_path / "missing.json"), "--rpc", "http://127.0.0.1:9"]) == 2
    assert main([str(tmp_path / "broken.json"), "--rpc", "http://127.0.0.1:9"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_cli_refuses_a_file_whose_hash_is_not_the_documents(tmp_path, capsys):
    from workers.chain.verify import main

    tree = build_tree([leaf_for_sha256(_sha(i)) for i in range(2)])
    doc = proof_document(
        sha256_hex=_sha(0),
        leaf=tree.leaves[0],
        proof=tree.proof(0),
        root=tree.root,
        chain_id=31337,
        contract="0x" + "11" * 20,
        tx_hash="0x" + "22" * 32,
        block_number=1,
        batch_count=2,
        leaf_index=0,
    )
    (tmp_path / "proof.json").write_text(json.dumps(doc))
    (tmp_path / "output.txt").write_text("output 1")

    code = main([str(tmp_path / "proof.json"), "--file", str(tmp_path / "output.txt"), "--json"])

    assert code == 1
    result = json.loads(capsys.readouterr().out)
    assert result["verified"] is False and "not the document's" in result["reason"]
