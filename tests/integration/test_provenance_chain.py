"""Provenance on a real chain (anvil) with the real signer, scheduler and Redis: the signer is
killed at every crash point (ATELIER_CHAIN_CRASH_AT), restarted without it, and every hash ends
on chain exactly once, with the database agreeing with the chain; the key is nowhere to be read."""

from __future__ import annotations

import io
import os
import threading
from types import SimpleNamespace

import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import transaction
from eth_account import Account
from web3 import Web3

from apps.core import processes as platform_processes
from apps.jobs import services as job_services
from apps.outputs.models import Moderation
from apps.provenance.anchor import CRASH_POINTS
from apps.provenance.models import (
    AnchorBatch,
    BatchState,
    ChainDeployment,
    ProvenanceRecord,
    RecordState,
)
from tests import factories
from tests.harness import free_port
from tests.integration.helpers import wait_for
from workers.chain.contract import Registry
from workers.chain.merkle import leaf_for_sha256, verify_proof

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

BATCH = 3
CHAIN_ENV = {
    "CHAIN_ID": "31337",
    "ATELIER_CHAIN_BATCH_SIZE": str(BATCH),
    "ATELIER_CHAIN_BATCH_AGE_SECONDS": "0.5",
    "ATELIER_CHAIN_BATCHER_SECONDS": "0.3",
    "ATELIER_CHAIN_CONFIRMATIONS": "2",
    "ATELIER_CHAIN_POLL_SECONDS": "0.2",
    "ATELIER_CHAIN_REPLACE_AFTER_SECONDS": "30",
}


@pytest.fixture
def anvil(tmp_path):
    if not platform_processes.anvil_binary().exists():
        pytest.skip("anvil is not installed (cd contracts && npm ci)")
    port = free_port()
    proc = platform_processes.spawn(
        "anvil",
        platform_processes.anvil_cmd(port=port, state_path=tmp_path / "anvil-state.json"),
        env=os.environ,
        log_dir=tmp_path / "logs",
    )
    url = f"http://127.0.0.1:{port}"
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 5}))
    try:
        wait_for(lambda: _answers(w3), timeout=30, what="anvil to answer")
        yield SimpleNamespace(url=url, w3=w3)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _answers(w3: Web3) -> bool:
    try:
        return w3.eth.chain_id == 31337
    except Exception:
        return False


@pytest.fixture
def redis_messages():
    """Every command any process sends to Redis while the test runs (Celery messages, channel
    layer doorbells), from MONITOR."""
    seen: list[str] = []
    stop = threading.Event()
    # No read timeout: MONITOR waits quietly between bursts of traffic (a busy machine can leave
    # it idle for seconds), and a timeout would end the listener and hide what came after.
    client = redis.Redis.from_url(django_settings.REDIS_URL, socket_timeout=None)

    def listen():
        with client.monitor() as monitor:
            for command in monitor.listen():
                seen.append(str(command.get("command", "")))
                if stop.is_set():
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    yield seen
    stop.set()
    client.ping()  # one more command, so the monitor wakes and sees the flag
    thread.join(timeout=5)


@pytest.fixture
def platform(processes, anvil, tmp_path, monkeypatch, settings):
    """A funded signer key in a 0600 file, the registry deployed, the scheduler running, and
    blocks coming every 0.3 s (confirmations need blocks on top)."""
    key = Account.create()
    key_file = tmp_path / "signer.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.key.hex())
    anvil.w3.provider.make_request("anvil_setBalance", [key.address, hex(10**20)])
    env = {**CHAIN_ENV, "CHAIN_RPC_URL": anvil.url, "CHAIN_PRIVATE_KEY_FILE": str(key_file)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    processes.env.update(env)
    settings.CHAIN_RPC_URL = anvil.url
    settings.CHAIN_ID = 31337
    out = io.StringIO()
    call_command("chain_deploy", stdout=out)
    job_services._broker_lost_its_messages()  # the scheduler knows this Redis: nothing to heal
    processes.scheduler(interval=0.3)
    stop = threading.Event()

    def mine():
        while not stop.wait(0.3):
            try:
                anvil.w3.provider.make_request("evm_mine", [])
            except Exception:  # noqa: BLE001 - the node is stopping
                return

    miner = threading.Thread(target=mine, daemon=True)
    miner.start()
    yield SimpleNamespace(key=key, deploy_output=out.getvalue(), anvil=anvil)
    stop.set()
    miner.join(timeout=5)


def start_signer(processes, crash_at: str | None = None):
    if crash_at:
        processes.env["ATELIER_CHAIN_CRASH_AT"] = crash_at
    try:
        return processes.worker("signer", queues="chain")
    finally:
        processes.env.pop("ATELIER_CHAIN_CRASH_AT", None)


def batch_of(outputs) -> AnchorBatch:
    def closed():
        ids = set(
            ProvenanceRecord.objects.filter(output__in=outputs, batch__isnull=False).values_list(
                "batch_id", flat=True
            )
        )
        return ids.pop() if len(ids) == 1 else None

    return AnchorBatch.objects.get(pk=wait_for(closed, timeout=60, what="the batch to close"))


def assert_agrees_with_chain(w3: Web3, batch: AnchorBatch) -> None:
    registry = Registry(w3, batch.contract)
    events = registry.find_root_events(batch.root_bytes)
    assert len(events) == 1, events  # recorded exactly once
    (event,) = events
    assert (event["tx_hash"], event["block_number"], event["block_hash"]) == (
        batch.tx_hash,
        batch.block_number,
        batch.block_hash,
    )
    assert registry.root_record(batch.root_bytes).count == batch.count
    for record in batch.records.all():
        assert record.state == RecordState.FINAL
        proof = [bytes.fromhex(p[2:]) for p in record.proof]
        assert verify_proof(leaf_for_sha256(record.sha256), proof, batch.root_bytes)
        assert registry.verify(batch.root_bytes, leaf_for_sha256(record.sha256), proof)


def test_the_signer_killed_at_every_crash_point_records_each_batch_exactly_once(
    processes, platform, redis_messages, project, people
):
    batches = []
    for point in CRASH_POINTS:
        doomed = start_signer(processes, crash_at=point)
        with transaction.atomic():  # the batcher sees the three together: one batch
            outputs = [
                factories.make_output(project, people["member"], moderation=Moderation.APPROVED)
                for _ in range(BATCH)
            ]
        batch = batch_of(outputs)
        wait_for(lambda p=doomed: p.poll() is not None, timeout=90, what=f"a crash at {point}")
        assert doomed.returncode == 137, processes.log("signer")[-3000:]
        processes.procs.pop("signer")
        start_signer(processes)

        def final(b=batch):
            b.refresh_from_db()
            return b.state == BatchState.FINAL

        wait_for(final, timeout=120, interval=0.2, what=f"batch {batch.pk} final after {point}")
        assert_agrees_with_chain(platform.anvil.w3, batch)
        batches.append(batch)
        processes.kill("signer")

    assert len({b.root for b in batches}) == len(CRASH_POINTS)
    nonces = sorted(b.nonce for b in batches)
    assert nonces == list(range(nonces[0], nonces[0] + len(batches)))  # no gap, none twice
    assert_key_never_leaked(platform, processes, redis_messages)


def assert_key_never_leaked(platform, processes, redis_messages) -> None:
    key = platform.key.key.hex().removeprefix("0x").lower()
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert key not in dump.getvalue().lower()
    for log in processes.log_dir.glob("*.log"):
        assert key not in log.read_text(errors="replace").lower(), log.name
    assert redis_messages, "MONITOR saw no traffic"
    assert key not in "\n".join(redis_messages).lower()
    assert key not in platform.deploy_output.lower()


def test_chain_dev_setup_makes_a_private_funded_key_and_deploys_once(
    anvil, settings, monkeypatch, tmp_path
):
    settings.VAR_DIR = tmp_path / "var"
    settings.CHAIN_RPC_URL = anvil.url
    settings.CHAIN_ID = 31337
    for name in ("CHAIN_PRIVATE_KEY", "CHAIN_PRIVATE_KEY_FILE", "CHAIN_KEYSTORE"):
        monkeypatch.delenv(name, raising=False)

    first, second = io.StringIO(), io.StringIO()
    call_command("chain_dev_setup", stdout=first)
    call_command("chain_dev_setup", stdout=second)

    key_file = tmp_path / "var" / "chain" / "signer.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    account = Account.from_key(key_file.read_text().strip())
    assert anvil.w3.eth.get_balance(account.address) > 0
    assert "Deployed registry" in first.getvalue()
    assert "Already deployed" in second.getvalue()
    assert ChainDeployment.objects.get(chain_id=31337).deployer == account.address
    key = key_file.read_text().strip().removeprefix("0x")
    assert key not in first.getvalue() + second.getvalue()
