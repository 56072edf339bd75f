"""A real chain node (anvil, npm @foundry-rs/anvil) with its state on disk: a recorded root and
its proof survive `kill -9` and a restart, and the stand-alone verifier reads them back."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.core.processes import anvil_binary, anvil_cmd, free_port, spawn
from workers.chain.contract import Registry, deploy_registry
from workers.chain.keys import ANVIL_DEV_KEY, load_signer, sign_tx
from workers.chain.merkle import build_tree, leaf_for_sha256
from workers.chain.node import suggested_fees, wait_until_answers
from workers.chain.proof import proof_document, verify_document

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BATCH = 50
INDEX = 17


@pytest.fixture
def anvil(tmp_path):
    """start() runs anvil on a fresh port with the state file in tmp_path; every process it
    started is killed at the end."""
    if not anvil_binary().exists():
        message = f"anvil missing at {anvil_binary()} (npm ci --prefix contracts)"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the anvil test must run)")
        pytest.skip(message)
    state = tmp_path / "anvil-state.json"
    started: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = spawn(
            "anvil",
            anvil_cmd(port=port, state_path=state, chain_id=31337),
            env=os.environ,
            log_dir=tmp_path / "logs",
        )
        started.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    start.state = state  # type: ignore[attr-defined]
    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _send(w3, signer, tx: dict) -> dict:
    raw, tx_hash = sign_tx(signer, tx)
    w3.eth.send_raw_transaction(raw)
    return dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30))


def _wait_for_state_dump(state: Path, block: int, timeout: float = 15.0) -> None:
    """anvil rewrites the state file every second (--state-interval 1): wait until a complete
    dump holds `block`, so the kill below cannot race the first write."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(state.read_text()).get("best_block_number", -1) >= block:
                return
        except (OSError, ValueError):
            pass  # not written yet, or caught mid-write
        time.sleep(0.1)
    raise AssertionError(f"anvil never dumped block {block} to {state}")


def test_a_recorded_root_and_its_proof_survive_kill_9_and_a_restart(anvil, tmp_path):
    proc, url = anvil()
    w3 = wait_until_answers(url)
    signer = load_signer({"CHAIN_PRIVATE_KEY": ANVIL_DEV_KEY})
    registry = Registry(w3, deploy_registry(w3, account=signer))

    outputs = [f"approved output {i}".encode() for i in range(BATCH)]
    shas = [hashlib.sha256(o).hexdigest() for o in outputs]
    tree = build_tree([leaf_for_sha256(s) for s in shas])
    max_fee, tip = suggested_fees(w3)

    def record(**kw) -> dict:
        tx = registry.record_root_tx(
            tree.root,
            BATCH,
            sender=signer.address,
            nonce=w3.eth.get_transaction_count(signer.address, "pending"),
            chain_id=w3.eth.chain_id,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
            **kw,
        )
        return _send(w3, signer, tx)

    receipt = record()
    assert receipt["status"] == 1
    # A retry that skips the estimate is mined and reverts: the contract keeps one record.
    retry = record(gas=100_000)
    assert retry["status"] == 0
    before = registry.root_record(tree.root)
    assert before is not None and before.count == BATCH

    doc = proof_document(
        sha256_hex=shas[INDEX],
        leaf=tree.leaves[INDEX],
        proof=tree.proof(INDEX),
        root=tree.root,
        chain_id=w3.eth.chain_id,
        contract=registry.address,
        tx_hash=receipt["transactionHash"],
        block_number=receipt["blockNumber"],
        batch_count=BATCH,
        leaf_index=INDEX,
    )
    doc_path = tmp_path / "proof.json"
    doc_path.write_text(json.dumps(doc, indent=2))
    (tmp_path / "output.bin").write_bytes(outputs[INDEX])

    _wait_for_state_dump(anvil.state, retry["blockNumber"])
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL

    _, url2 = anvil()
    w3b = wait_until_answers(url2)
    again = Registry(w3b, registry.address)

    assert again.root_record(tree.root) == before
    [event] = again.find_root_events(tree.root)
    assert event["tx_hash"] == receipt["transactionHash"].to_0x_hex()
    assert event["block_hash"] == receipt["blockHash"].to_0x_hex()
    result = verify_document(json.loads(doc_path.read_text()), rpc_url=url2)
    assert result.verified, result.reason
    assert result.submitter == signer.address

    cli = [sys.executable, "-m", "workers.chain.verify", str(doc_path), "--rpc", url2]
    ok = subprocess.run(
        [*cli, "--file", str(tmp_path / "output.bin")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("VERIFIED")

    (tmp_path / "other.bin").write_bytes(outputs[INDEX + 1])
    wrong = subprocess.run(
        [*cli, "--file", str(tmp_path / "other.bin")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert wrong.stdout.startswith("NOT VERIFIED")
