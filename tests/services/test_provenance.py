"""Provenance on-chain, on an in-process chain (eth-tester + py-evm): which outputs get records,
when batches close, proofs, nonces under concurrency, and the anchor runner's every state."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.services import JobParamsError, job_create
from apps.jobs.states import JobState
from apps.outputs.models import Moderation, Output
from apps.projects.selectors import project_access
from apps.provenance import anchor as anchor_module
from apps.provenance import chain as chain_module
from apps.provenance.anchor import Anchor
from apps.provenance.conf import chain_config
from apps.provenance.jobkinds import AnchorParams
from apps.provenance.models import (
    AnchorBatch,
    BatchState,
    ChainDeployment,
    Mode,
    ProvenanceRecord,
    RecordState,
    SignerNonce,
)
from apps.provenance.selectors import proof_for, proof_for_sha256
from apps.provenance.services import (
    ANCHOR_KIND,
    batcher_tick,
    chain_deployment_ensure,
    provenance_settings_set,
    records_create_pending,
)
from apps.provenance.transitions import batch_retry
from apps.review.models import ReviewDecision
from apps.review.services import output_decide
from tests import factories

eth_tester = pytest.importorskip("eth_tester")

from eth_account import Account  # noqa: E402
from web3 import EthereumTesterProvider, Web3  # noqa: E402

from workers.chain.contract import Registry  # noqa: E402
from workers.chain.merkle import leaf_for_sha256, verify_proof  # noqa: E402
from workers.chain.proof import verify_document  # noqa: E402
from workers.tasks.runtime import execute_job  # noqa: E402


class LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; the concurrency tests share it between threads."""

    lock = threading.RLock()

    def make_request(self, method, params):
        with self.lock:
            return super().make_request(method, params)


class Reporter:
    """The Reporter seam, recording what the runner said."""

    def __init__(self):
        self.lines: list[str] = []
        self.steps: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def log(self, message, level="info"):
        self.lines.append(message)

    def step(self, step, total, metrics=None):
        self.steps.append((step, total))

    def should_stop(self):
        return self.stop.is_set()


@pytest.fixture
def chain(monkeypatch, settings):
    """A fresh in-process chain with the registry deployed by a funded signer whose key is in
    the environment, as the signer worker has it."""
    w3 = Web3(LockedTesterProvider())
    signer = Account.create()
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": signer.address, "value": 10**20})
    monkeypatch.setenv("CHAIN_PRIVATE_KEY", signer.key.hex())
    for name in ("CHAIN_PRIVATE_KEY_FILE", "CHAIN_KEYSTORE", "ATELIER_CHAIN_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(chain_module, "connect", lambda cfg=None: w3)
    settings.CHAIN_RPC_URL = "eth-tester://in-process"
    settings.CHAIN_ID = int(w3.eth.chain_id)
    settings.CHAIN = {
        **settings.CHAIN,
        "BATCH_SIZE": 4,
        "BATCH_AGE_SECONDS": 60.0,
        "CONFIRMATIONS": 2,
        "REPLACE_AFTER_SECONDS": 60.0,
        "POLL_SECONDS": 0.01,
    }
    return SimpleNamespace(w3=w3, signer=signer, tester=w3.provider.ethereum_tester)


@pytest.fixture
def deployed(db, chain):
    deployment, created = chain_deployment_ensure(
        w3=chain.w3, account=chain.signer, chain_id=chain_config().chain_id
    )
    assert created
    chain.registry = Registry(chain.w3, deployment.address)
    # The deployment took the signer's first nonce: batches start after it.
    chain.first_nonce = chain.w3.eth.get_transaction_count(chain.signer.address)
    return chain


def configure(settings, **values):
    settings.CHAIN = {**settings.CHAIN, **values}


def mine(chain, blocks: int = 1) -> None:
    with LockedTesterProvider.lock:
        chain.tester.mine_blocks(blocks)


@contextmanager
def miner(chain, every: float = 0.02):
    """Blocks keep coming (confirmations need blocks on top) while the block runs."""
    stop = threading.Event()

    def loop():
        while not stop.wait(every):
            mine(chain)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def approved(project, author, n: int, **fields):
    return [
        factories.make_output(project, author, moderation=Moderation.APPROVED, **fields)
        for _ in range(n)
    ]


def runner_for(batch, chain, reporter=None) -> Anchor:
    ctx = SimpleNamespace(job_id=0, params=AnchorParams(batch_id=batch.pk))
    ctx.reporter = reporter or Reporter()
    return Anchor(ctx=ctx, cfg=chain_config(), w3=chain.w3, account=chain.signer, batch=batch)


def events_for(chain, batch) -> list[dict]:
    return Registry(chain.w3, batch.contract).find_root_events(batch.root_bytes)


# --------------------------------------------------------------------------- eligibility


def test_only_approved_outputs_get_records_by_default(deployed, project, people):
    author = people["member"]
    clean = factories.make_output(project, author)
    flagged = factories.make_output(project, author, moderation=Moderation.FLAGGED)
    rejected = factories.make_output(project, author, moderation=Moderation.REJECTED)
    (ok,) = approved(project, author, 1)

    assert records_create_pending() == 1

    record = ProvenanceRecord.objects.get()
    assert record.output == ok and record.project == project
    assert record.state == RecordState.PENDING and record.batch is None
    assert record.leaf == "0x" + leaf_for_sha256(ok.sha256).hex()
    assert not ProvenanceRecord.objects.filter(output__in=[clean, flagged, rejected]).exists()


def test_mode_all_records_every_clean_or_approved_output(deployed, project, people):
    provenance_settings_set(
        access=project_access(user=people["admin"], project_id=project.pk),
        actor=people["admin"],
        mode=Mode.ALL,
    )
    author = people["member"]
    clean = factories.make_output(project, author)
    factories.make_output(project, author, moderation=Moderation.FLAGGED)
    (ok,) = approved(project, author, 1)

    records_create_pending()

    assert set(ProvenanceRecord.objects.values_list("output_id", flat=True)) == {clean.pk, ok.pk}


def test_mode_off_records_nothing_new(deployed, project, people):
    provenance_settings_set(
        access=project_access(user=people["admin"], project_id=project.pk),
        actor=people["admin"],
        mode=Mode.OFF,
    )
    approved(project, people["member"], 2)

    assert records_create_pending() == 0
    assert not ProvenanceRecord.objects.exists()


def test_only_project_admins_choose_the_mode(deployed, project, people):
    access = project_access(user=people["member"], project_id=project.pk)
    with pytest.raises(PermissionDenied):
        provenance_settings_set(access=access, actor=people["member"], mode=Mode.ALL)


def test_the_batcher_does_nothing_without_a_chain(db, project, people, settings):
    settings.CHAIN_RPC_URL = ""
    approved(project, people["member"], 2)

    assert batcher_tick() == {}
    assert not ProvenanceRecord.objects.exists()


# --------------------------------------------------------------------------- batches


def make_old(outputs) -> None:
    """Outputs (and their approvals) from 61 s ago: a batch's age counts from eligibility."""
    past = timezone.now() - timedelta(seconds=61)
    outputs.update(created_at=past)
    ReviewDecision.objects.filter(output__in=outputs).update(decided_at=past)


def test_a_batch_closes_once_enough_records_wait(deployed, project, people):
    approved(project, people["member"], 3)
    batcher_tick()
    assert not AnchorBatch.objects.exists()  # 3 < 4 and none is 60 s old

    approved(project, people["member"], 6)
    result = batcher_tick()

    # Two full batches; the one record left waits for more or for its age.
    batches = list(AnchorBatch.objects.order_by("pk"))
    assert result["batches"] == 2 and [b.count for b in batches] == [4, 4]
    assert {b.state for b in batches} == {BatchState.CLOSED}
    assert ProvenanceRecord.objects.filter(state=RecordState.PENDING).count() == 1
    batch = batches[0]
    assert batch.project == project
    job = batch.job
    assert job.kind == ANCHOR_KIND and job.queue == "chain" and job.created_by is None
    assert job.params == {"batch_id": batch.pk}


def test_a_batch_closes_when_its_oldest_record_is_old_enough(deployed, project, people):
    approved(project, people["member"], 2)
    records_create_pending()
    make_old(Output.objects.all())

    batcher_tick()

    assert AnchorBatch.objects.get().count == 2


def test_every_proof_leads_from_the_output_hash_to_the_root(deployed, project, people, settings):
    configure(settings, BATCH_SIZE=7)
    outputs = approved(project, people["member"], 7)
    batcher_tick()

    batch = AnchorBatch.objects.get()
    root = batch.root_bytes
    for output in outputs:
        record = output.provenance
        proof = [bytes.fromhex(p[2:]) for p in record.proof]
        assert record.state == RecordState.BATCHED and record.batch == batch
        assert verify_proof(leaf_for_sha256(output.sha256), proof, root)
    indexes = sorted(batch.records.values_list("leaf_index", flat=True))
    assert indexes == list(range(7))


def test_running_the_batcher_again_changes_nothing(deployed, project, people):
    approved(project, people["member"], 4)
    batcher_tick()
    before = list(ProvenanceRecord.objects.order_by("pk").values())

    batcher_tick()
    records_create_pending()

    assert list(ProvenanceRecord.objects.order_by("pk").values()) == before
    assert AnchorBatch.objects.count() == 1 and Job.objects.filter(kind=ANCHOR_KIND).count() == 1


def test_the_same_content_twice_is_one_leaf_shared_by_both_records(
    deployed, project, people, settings
):
    configure(settings, BATCH_SIZE=3)
    same = "ab" * 32
    first, second = approved(project, people["member"], 2, sha256=same)
    approved(project, people["member"], 1)
    batcher_tick()

    batch = AnchorBatch.objects.get()
    a, b = first.provenance, second.provenance
    assert batch.count == 2  # three records, two distinct hashes
    assert not a.shared_leaf and b.shared_leaf
    assert (b.batch, b.leaf_index, b.proof) == (a.batch, a.leaf_index, a.proof)

    (later,) = approved(project, people["member"], 1, sha256=same)
    records_create_pending()
    make_old(Output.objects.filter(pk=later.pk))
    batcher_tick()

    later.provenance.refresh_from_db()
    assert later.provenance.batch == batch and later.provenance.shared_leaf
    assert AnchorBatch.objects.count() == 1  # no new tree for a hash already in one


# --------------------------------------------------------------------------- the runner


def test_the_anchor_job_records_the_root_and_finishes_final(
    transactional_db, deployed, project, people
):
    outputs = approved(project, people["member"], 4)
    batcher_tick()
    batch = AnchorBatch.objects.get()

    with miner(deployed):
        assert execute_job(batch.job_id, worker_id="signer-test") == JobState.SUCCEEDED

    batch.refresh_from_db()
    assert batch.state == BatchState.FINAL and batch.nonce == deployed.first_nonce
    assert batch.confirmations >= 2 and batch.final_at is not None and batch.gas_used
    record = deployed.registry.root_record(batch.root_bytes)
    assert record.count == 4 and record.submitter == deployed.signer.address
    assert record.block_number == batch.block_number
    assert [e["tx_hash"] for e in events_for(deployed, batch)] == [batch.tx_hash]
    assert set(ProvenanceRecord.objects.values_list("state", flat=True)) == {RecordState.FINAL}
    job = Job.objects.get(pk=batch.job_id)
    assert job.result["tx_hash"] == batch.tx_hash
    lines = [e.data["message"] for e in JobEvent.objects.filter(job=job, kind=EventKind.LOG)]
    for word in ("signed transaction", "sent transaction", "mined in block", "final:"):
        assert any(word in line for line in lines), word
    key = deployed.signer.key.hex().removeprefix("0x")
    dumped = str(list(JobEvent.objects.filter(job=job).values())) + str(job.result)
    assert key not in dumped and key not in str(list(AnchorBatch.objects.values()))
    doc = proof_for(outputs[0].provenance)
    assert verify_document(doc, w3=deployed.w3).verified
    assert proof_for_sha256(outputs[1].sha256)["root"] == batch.root


def test_a_crash_before_the_commit_leaves_the_batch_closed_and_the_nonce_free(
    deployed, project, people, monkeypatch
):
    approved(project, people["member"], 4)
    batcher_tick()
    batch = AnchorBatch.objects.get()

    def crash(name):
        if name == "after_sign":
            raise RuntimeError("killed")

    monkeypatch.setattr(anchor_module, "crash_point", crash)
    with pytest.raises(RuntimeError):
        runner_for(batch, deployed).advance(batch)

    batch.refresh_from_db()
    assert batch.state == BatchState.CLOSED and batch.nonce is None and not batch.raw_tx
    assert not SignerNonce.objects.exists()
    monkeypatch.setattr(anchor_module, "crash_point", lambda name: None)
    runner_for(batch, deployed).advance(batch)
    batch.refresh_from_db()
    assert batch.state == BatchState.SIGNED and batch.nonce == deployed.first_nonce
    assert batch.raw_tx
    assert deployed.registry.root_record(batch.root_bytes) is None  # signed, not yet sent


def test_a_signed_transaction_sent_twice_is_recorded_once(deployed, project, people, settings):
    configure(settings, CONFIRMATIONS=0)
    approved(project, people["member"], 4)
    batcher_tick()
    batch = AnchorBatch.objects.get()
    anchor = runner_for(batch, deployed)
    anchor.advance(batch)  # closed → signed
    batch.refresh_from_db()
    deployed.w3.eth.send_raw_transaction(batch.raw_tx)  # as if sent before a crash

    result = anchor.run()

    assert result["state"] == BatchState.FINAL
    assert [e["tx_hash"] for e in events_for(deployed, batch)] == [batch.tx_hash]


def test_a_root_already_on_chain_is_adopted_and_no_nonce_is_spent(
    deployed, project, people, settings
):
    configure(settings, CONFIRMATIONS=0)
    approved(project, people["member"], 4)
    batcher_tick()
    batch = AnchorBatch.objects.get()
    other = deployed.w3.eth.accounts[1]
    tx = deployed.registry.contract.functions.recordRoot(batch.root_bytes, 4).transact(
        {"from": other}
    )

    runner_for(batch, deployed).run()

    batch.refresh_from_db()
    assert batch.state == BatchState.FINAL and batch.tx_hash == Web3.to_hex(tx)
    assert batch.nonce is None and not SignerNonce.objects.exists()
    assert len(events_for(deployed, batch)) == 1


def test_a_stuck_transaction_is_replaced_with_higher_fees_and_mined_once(
    deployed, project, people, settings
):
    configure(settings, CONFIRMATIONS=1, REPLACE_AFTER_SECONDS=1.0)
    approved(project, people["member"], 4)
    batcher_tick()
    batch = AnchorBatch.objects.get()
    deployed.tester.disable_auto_mine_transactions()
    anchor = runner_for(batch, deployed)
    while batch.state != BatchState.SENT:
        anchor.advance(batch)
        batch.refresh_from_db()
    first_fee, first_hash = batch.max_fee_per_gas, batch.tx_hash
    AnchorBatch.objects.filter(pk=batch.pk).update(sent_at=timezone.now() - timedelta(seconds=5))

    anchor.advance(AnchorBatch.objects.get(pk=batch.pk))  # no receipt for 5 s: replace
    anchor.advance(AnchorBatch.objects.get(pk=batch.pk))  # broadcast the replacement
    mine(deployed, 3)
    anchor.run()

    batch.refresh_from_db()
    assert batch.state == BatchState.FINAL and batch.replacements == 1
    assert batch.nonce == deployed.first_nonce
    assert batch.max_fee_per_gas >= first_fee * 1.125 and batch.tx_hash != first_hash
    assert batch.tx_hashes == [first_hash, batch.tx_hash]
    assert [e["tx_hash"] for e in events_for(deployed, batch)] == [batch.tx_hash]


def test_a_reorganisation_sends_the_batch_back_until_it_is_mined_again(
    deployed, project, people, settings
):
    configure(settings, CONFIRMATIONS=3, REPLACE_AFTER_SECONDS=1.0)
    approved(project, people["member"], 4)
    batcher_tick()
    batch = AnchorBatch.objects.get()
    reporter = Reporter()
    anchor = runner_for(batch, deployed, reporter)
    snapshot = deployed.tester.take_snapshot()
    while batch.state != BatchState.MINED:
        anchor.advance(batch)
        batch.refresh_from_db()
    mined_in = batch.block_hash

    with LockedTesterProvider.lock:  # the block with our transaction is replaced by others
        deployed.tester.revert_to_snapshot(snapshot)
        deployed.tester.mine_blocks(2)
    anchor.advance(batch)
    batch.refresh_from_db()
    assert batch.state == BatchState.SENT and batch.block_number is None
    AnchorBatch.objects.filter(pk=batch.pk).update(sent_at=timezone.now() - timedelta(seconds=5))
    with miner(deployed):
        anchor.run()

    batch.refresh_from_db()
    assert batch.state == BatchState.FINAL and batch.block_hash != mined_in
    assert any("reorganisation" in line for line in reporter.lines)
    assert len(events_for(deployed, batch)) == 1


def test_a_reverted_transaction_fails_the_batch_and_staff_can_send_it_again(
    deployed, project, people, settings, make_user
):
    configure(settings, CONFIRMATIONS=0)
    approved(project, people["member"], 4)
    batcher_tick()
    batch = AnchorBatch.objects.get()
    AnchorBatch.objects.filter(pk=batch.pk).update(gas_limit=30_000)  # runs out of gas

    with pytest.raises(Exception, match="reverted"):
        runner_for(batch, deployed).run()

    batch.refresh_from_db()
    assert batch.state == BatchState.FAILED and "reverted" in batch.error
    assert deployed.registry.root_record(batch.root_bytes) is None
    AnchorBatch.objects.filter(pk=batch.pk).update(gas_limit=None)
    staff = make_user("ops", is_staff=True)
    batch_retry(batch=batch, actor=staff)
    batch.refresh_from_db()
    assert batch.state == BatchState.CLOSED and batch.nonce is None

    runner_for(batch, deployed).run()

    batch.refresh_from_db()
    # the first nonce went to the reverted transaction
    assert batch.state == BatchState.FINAL and batch.nonce == deployed.first_nonce + 1


def test_a_member_cannot_start_an_anchor_job(deployed, project, people):
    approved(project, people["member"], 4)
    batcher_tick()
    batch = AnchorBatch.objects.get()

    with pytest.raises(JobParamsError):
        job_create(
            project=project,
            kind=ANCHOR_KIND,
            params={"batch_id": batch.pk},
            created_by=people["admin"],
        )


def test_chain_deploy_deploys_once_and_never_prints_the_key(deployed, capsys):
    call_command("chain_deploy")

    out = capsys.readouterr().out
    assert "Already deployed" in out and ChainDeployment.objects.count() == 1
    assert deployed.signer.key.hex().removeprefix("0x") not in out


# --------------------------------------------------------------------------- concurrency


def approve_all(project, reviewers, outputs, threads: int = 8) -> None:
    chunks = [outputs[i::threads] for i in range(threads)]
    errors: list[BaseException] = []

    def approve(chunk, reviewer):
        try:
            access = project_access(user=reviewer, project_id=project.pk)
            for output in chunk:
                output_decide(
                    access=access, actor=reviewer, output_id=output.pk, approve=True, reason=""
                )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            errors.append(exc)
        finally:
            connection.close()

    workers = [
        threading.Thread(target=approve, args=(chunk, reviewers[i % len(reviewers)]))
        for i, chunk in enumerate(chunks)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors


@pytest.mark.slow
def test_nonces_stay_contiguous_under_500_concurrent_approvals(
    transactional_db, deployed, project, people, settings
):
    configure(settings, BATCH_SIZE=25, CONFIRMATIONS=0)
    outputs = [
        factories.make_output(project, people["member"], moderation=Moderation.FLAGGED)
        for _ in range(500)
    ]
    done = threading.Event()

    def batcher():
        while not done.is_set():
            batcher_tick()
            time.sleep(0.01)
        connection.close()

    background = threading.Thread(target=batcher)
    background.start()
    try:
        approve_all(project, [people["reviewer"], people["admin"]], outputs)
    finally:
        done.set()
        background.join()
    make_old(Output.objects.all())
    batcher_tick()
    batches = list(AnchorBatch.objects.order_by("pk"))
    assert sum(b.count for b in batches) == 500 and len(batches) >= 20

    def sign(batch):
        try:
            runner_for(batch, deployed).advance(batch)  # closed → signed, concurrently
        finally:
            connection.close()

    signers = [threading.Thread(target=sign, args=(b,)) for b in batches]
    for thread in signers:
        thread.start()
    for thread in signers:
        thread.join()
    signed = list(AnchorBatch.objects.order_by("nonce"))
    first = deployed.first_nonce
    assert [b.nonce for b in signed] == list(range(first, first + len(batches)))  # no gap
    for batch in signed:  # sent in nonce order, each mines
        runner_for(batch, deployed).run()
    assert set(AnchorBatch.objects.values_list("state", flat=True)) == {BatchState.FINAL}
    assert ProvenanceRecord.objects.filter(state=RecordState.FINAL).count() == 500
    assert all(len(events_for(deployed, b)) == 1 for b in batches)


# --------------------------------------------------------------------------- the scheduler hook


def test_the_scheduler_runs_the_batcher_the_app_registered(
    transactional_db, deployed, project, people
):
    from apps.core.management.commands.scheduler import run_periodic
    from apps.jobs import registry

    tasks = {task.name: task for task in registry.periodic_tasks()}
    assert tasks["provenance.batcher"].fn is batcher_tick
    calls: list[int] = []
    registry.register_periodic("test.tick", lambda: calls.append(1), every_seconds=3600)
    try:
        approved(project, people["member"], 4)
        last_run: dict[str, float] = {}
        run_periodic(last_run)
        run_periodic(last_run)  # not due again for an hour
    finally:
        registry._PERIODIC.pop("test.tick", None)

    assert calls == [1]
    assert AnchorBatch.objects.count() == 1  # the batcher ran
