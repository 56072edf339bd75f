"""The provenance pages: the public verifier (by upload, by hash, by proof file, and its API),
the proof download, a project's batches and mode, and the gallery's on-chain badge.

Records are made final in the database by hand; the chain is an in-process one (eth-tester)
where the registry is deployed and, when a test says so, the batch's root really recorded.
"""

from __future__ import annotations

import hashlib
import io
import json
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation
from PIL import Image

from apps.audit.models import AuditEvent
from apps.outputs.models import Moderation, Output
from apps.provenance import pages
from apps.provenance.models import (
    AnchorBatch,
    BatchState,
    Mode,
    ProvenanceRecord,
    ProvenanceSettings,
    RecordState,
)
from tests import factories
from webapp.limits import FORM_OVERHEAD, IMAGE_UPLOAD_CAP, route_limit
from workers.chain.merkle import build_tree, leaf_for_sha256
from workers.chain.proof import verify_document

eth_tester = pytest.importorskip("eth_tester", reason="eth-tester[py-evm] (dev extras) missing")

from asgiref.sync import async_to_sync  # noqa: E402
from eth_account import Account  # noqa: E402
from web3 import EthereumTesterProvider, Web3  # noqa: E402

from workers.chain.contract import Registry, deploy_registry  # noqa: E402
from workers.chain.keys import sign_tx  # noqa: E402

FEES = {"max_fee_per_gas": 3 * 10**9, "max_priority_fee_per_gas": 10**9}
SECRET_PROMPT = "a lighthouse painted by xyzzy-secret"
REAL_CHAIN_W3 = pages.chain_w3


# --------------------------------------------------------------------------- the chain


def _funded(w3) -> Account:
    account = Account.create()
    tx = w3.eth.send_transaction(
        {"from": w3.eth.accounts[0], "to": account.address, "value": 10**20}
    )
    w3.eth.wait_for_transaction_receipt(tx)
    return account


@pytest.fixture
def chain(monkeypatch, settings):
    """An in-process chain with the registry deployed by this instance's signer; the pages'
    node is this chain."""
    w3 = Web3(EthereumTesterProvider())
    signer = _funded(w3)
    registry = Registry(w3, deploy_registry(w3, account=signer))
    monkeypatch.setattr(pages, "chain_w3", lambda: w3)
    settings.CHAIN_RPC_URL = "eth-tester://in-process"
    settings.CHAIN_ID = int(w3.eth.chain_id)
    settings.CHAIN_EXPLORER_TX_URL = "https://explorer.example/tx/{tx_hash}"
    return SimpleNamespace(w3=w3, signer=signer, registry=registry)


def record_root(chain, root: bytes, count: int, *, account=None, registry=None) -> dict:
    account = account or chain.signer
    registry = registry or chain.registry
    tx = registry.record_root_tx(
        root,
        count,
        sender=account.address,
        nonce=chain.w3.eth.get_transaction_count(account.address),
        chain_id=chain.w3.eth.chain_id,
        **FEES,
    )
    raw, tx_hash = sign_tx(account, tx)
    chain.w3.eth.send_raw_transaction(raw)
    return dict(chain.w3.eth.wait_for_transaction_receipt(tx_hash))


def anchor(chain, project, outputs, *, on_chain: bool = True) -> AnchorBatch:
    """A final batch over these outputs, as the anchor runner leaves it (its root recorded on
    the chain unless `on_chain` is False)."""
    leaves = [leaf_for_sha256(o.sha256) for o in outputs]
    tree = build_tree(leaves)
    receipt = record_root(chain, tree.root, len(leaves)) if on_chain else {}
    now = timezone.now()
    batch = AnchorBatch.objects.create(
        project=project,
        chain_id=chain.w3.eth.chain_id,
        contract=chain.registry.address,
        state=BatchState.FINAL,
        root="0x" + tree.root.hex(),
        count=len(leaves),
        sender=chain.signer.address,
        nonce=AnchorBatch.objects.count() + 1,
        tx_hash="0x" + (receipt.get("transactionHash") or b"\x11" * 32).hex().removeprefix("0x"),
        block_number=receipt.get("blockNumber", 7),
        gas_used=receipt.get("gasUsed", 46000),
        confirmations=3,
        final_at=now,
    )
    for index, (output, leaf) in enumerate(zip(outputs, leaves, strict=True)):
        ProvenanceRecord.objects.create(
            output=output,
            project=project,
            sha256=output.sha256,
            leaf="0x" + leaf.hex(),
            state=RecordState.FINAL,
            batch=batch,
            leaf_index=index,
            proof=["0x" + p.hex() for p in tree.proof(index)],
            final_at=now,
        )
    return batch


def png_bytes(color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def image_output(project, author, data: bytes, **fields) -> Output:
    return factories.make_output(
        project,
        author,
        kind="image",
        prompt=SECRET_PROMPT,
        sha256=hashlib.sha256(data).hexdigest(),
        moderation=Moderation.APPROVED,
        **fields,
    )


def outputs(project, author, n: int) -> list[Output]:
    return [
        factories.make_output(project, author, text=f"t{i}", moderation=Moderation.APPROVED)
        for i in range(n)
    ]


def verify_url(sha: str) -> str:
    return reverse("provenance:verify_hash", args=[sha])


def outcome(response) -> str:
    html = response.content.decode()
    start = html.index('data-outcome="') + len('data-outcome="')
    return html[start : html.index('"', start)]


# --------------------------------------------------------------------------- by hash, by file


def test_anyone_verifies_a_final_output_by_its_hash(db, client, chain, project, people):
    first, second, third = outputs(project, people["member"], 3)
    batch = anchor(chain, project, [first, second, third])

    response = client.get(verify_url(second.sha256))

    assert response.status_code == 200 and outcome(response) == "verified"
    html = response.content.decode()
    for fact in (batch.root, batch.tx_hash, chain.registry.address, chain.signer.address):
        assert fact in html
    assert f"https://explorer.example/tx/{batch.tx_hash}" in html
    assert reverse("provenance:proof", args=[second.sha256]) in html
    lookup = response.context["lookup"]
    on_chain = chain.registry.root_record(batch.root_bytes)
    assert lookup.check.block_number == on_chain.block_number
    assert lookup.check.block_time.timestamp() == on_chain.timestamp


def test_a_hash_is_accepted_in_capitals_or_with_0x_and_goes_to_its_page(
    db, client, chain, project, people
):
    (output,) = outputs(project, people["member"], 1)

    pasted = client.post(reverse("provenance:verify"), {"sha256": " 0x" + output.sha256.upper()})
    upper = client.get(verify_url(output.sha256.upper()))
    query = client.get(reverse("provenance:verify"), {"sha256": output.sha256})

    assert pasted.status_code == upper.status_code == query.status_code == 302
    assert pasted.url == upper.url == query.url == verify_url(output.sha256)


def test_a_malformed_hash_is_a_400_that_says_what_a_hash_is(db, client):
    response = client.post(reverse("provenance:verify"), {"sha256": "not-a-hash"})

    assert response.status_code == 400
    assert "64 hexadecimal digits" in response.content.decode()
    assert client.get(verify_url("1234")).status_code == 404


def test_anyone_verifies_by_uploading_the_file(db, client, chain, project, people):
    data = png_bytes()
    output = image_output(project, people["member"], data)
    anchor(chain, project, [output])

    response = client.post(reverse("provenance:verify"), {"file": _upload("mine.png", data)})

    assert response.status_code == 200 and outcome(response) == "verified"
    assert response.context["lookup"].sha256 == output.sha256


def _upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_a_copy_with_content_credentials_verifies_by_the_original_hash(
    db, client, chain, project, people, tmp_path
):
    pytest.importorskip("c2pa", reason="c2pa-python is not installed")
    from workers.imaging.credentials import ChainRecordRef, dev_signing, embed_credentials

    data = png_bytes((10, 120, 40))
    output = image_output(project, people["member"], data)
    batch = anchor(chain, project, [output])
    (tmp_path / "a.png").write_bytes(data)
    record = ChainRecordRef(
        sha256=output.sha256,
        chain_id=batch.chain_id,
        contract=batch.contract,
        tx_hash=batch.tx_hash,
    )
    embed_credentials(
        tmp_path / "a.png",
        tmp_path / "a.c2pa.png",
        model="demo",
        signing=dev_signing(tmp_path),
        record=record,
    )
    credentialed = (tmp_path / "a.c2pa.png").read_bytes()

    response = client.post(
        reverse("provenance:verify"), {"file": _upload("a.c2pa.png", credentialed)}
    )

    assert outcome(response) == "verified"
    assert response.context["upload"].had_credentials
    assert response.context["lookup"].sha256 == output.sha256
    assert hashlib.sha256(credentialed).hexdigest() in response.content.decode()


def test_a_file_nobody_recorded_has_no_record(db, client, chain):
    response = client.post(reverse("provenance:verify"), {"file": _upload("x.png", png_bytes())})

    assert response.status_code == 200 and outcome(response) == "unknown"


def test_a_waiting_record_is_recorded_soon_never_verified(db, client, chain, project, people):
    pending, batched = outputs(project, people["member"], 2)
    for output, state in ((pending, RecordState.PENDING), (batched, RecordState.BATCHED)):
        ProvenanceRecord.objects.create(
            output=output,
            project=project,
            sha256=output.sha256,
            leaf="0x" + leaf_for_sha256(output.sha256).hex(),
            state=state,
        )

    for output in (pending, batched):
        response = client.get(verify_url(output.sha256))
        assert outcome(response) == "recording"
        assert "Recorded soon" in response.content.decode()
        assert reverse("provenance:proof", args=[output.sha256]) not in response.content.decode()


# --------------------------------------------------------------------------- not verified


def test_a_root_the_chain_does_not_hold_is_not_verified(db, client, chain, project, people):
    (output,) = outputs(project, people["member"], 1)
    anchor(chain, project, [output], on_chain=False)

    response = client.get(verify_url(output.sha256))

    assert outcome(response) == "not_verified"
    assert "is not recorded by" in response.context["lookup"].check.reason
    assert 'data-outcome="verified"' not in response.content.decode()


def test_a_root_recorded_by_someone_else_is_not_verified(db, client, chain, project, people):
    (output,) = outputs(project, people["member"], 1)
    batch = anchor(chain, project, [output], on_chain=False)
    record_root(chain, batch.root_bytes, 1, account=_funded(chain.w3))  # not our signer

    response = client.get(verify_url(output.sha256))

    assert outcome(response) == "not_verified"
    assert f"not {chain.signer.address}" in response.context["lookup"].check.reason


def test_an_unreachable_node_says_so_and_not_verified(
    db, client, chain, project, people, monkeypatch, settings
):
    (output,) = outputs(project, people["member"], 1)
    anchor(chain, project, [output])
    monkeypatch.setattr(pages, "chain_w3", REAL_CHAIN_W3)  # the configured node: a closed port
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"

    response = client.get(verify_url(output.sha256))

    assert response.status_code == 200 and outcome(response) == "unreachable"
    assert "Could not reach the chain: not verified." in response.content.decode()
    assert not response.context["lookup"].check.verified
    # The node's address (it may hold an API key) stays in the log, out of the page.
    assert "127.0.0.1:9" not in response.content.decode()
    assert response.context["lookup"].check.reason == "could not read the registry: ConnectionError"


def test_no_configured_node_is_not_verified(
    db, client, chain, project, people, monkeypatch, settings
):
    (output,) = outputs(project, people["member"], 1)
    anchor(chain, project, [output])
    monkeypatch.setattr(pages, "chain_w3", REAL_CHAIN_W3)
    settings.CHAIN_RPC_URL = ""

    assert outcome(client.get(verify_url(output.sha256))) == "unreachable"


# --------------------------------------------------------------------------- proofs


def test_the_proof_download_parses_and_verifies_on_its_own(db, client, chain, project, people):
    first, second = outputs(project, people["member"], 2)
    batch = anchor(chain, project, [first, second])

    response = client.get(reverse("provenance:proof", args=[second.sha256]))

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    doc = json.loads(response.content)
    assert doc["sha256"] == second.sha256 and doc["root"] == batch.root
    assert doc["tx_hash"] == batch.tx_hash and doc["leaf_index"] == 1
    result = verify_document(doc, w3=chain.w3, expected_submitter=chain.signer.address)
    assert result.verified, result.reason


def test_there_is_no_proof_for_a_hash_that_is_not_final(db, client, chain):
    assert client.get(reverse("provenance:proof", args=["ab" * 32])).status_code == 404
    assert client.get(reverse("provenance:proof", args=["nothex"])).status_code == 404


def test_a_proof_file_brought_back_is_checked_as_written(db, client, chain, project, people):
    (output,) = outputs(project, people["member"], 2)[:1]
    anchor(chain, project, [output])
    doc = json.loads(client.get(reverse("provenance:proof", args=[output.sha256])).content)

    good = client.post(
        reverse("provenance:verify"), {"file": _upload("proof.json", json.dumps(doc).encode())}
    )
    forged = {**doc, "sha256": "cd" * 32}
    bad = client.post(
        reverse("provenance:verify"), {"file": _upload("proof.json", json.dumps(forged).encode())}
    )

    assert good.context["document_check"].verified
    assert 'id="pv-document-outcome" data-outcome="verified"' in good.content.decode()
    assert not bad.context["document_check"].verified
    assert "leaf" in bad.context["document_check"].reason


def test_a_proof_of_a_root_another_registry_holds_is_not_verified(db, client, chain):
    stranger = _funded(chain.w3)
    their_registry = Registry(chain.w3, deploy_registry(chain.w3, account=stranger))
    sha = hashlib.sha256(b"their file").hexdigest()
    tree = build_tree([leaf_for_sha256(sha)])
    receipt = record_root(chain, tree.root, 1, account=stranger, registry=their_registry)
    from workers.chain.proof import proof_document

    doc = proof_document(
        sha256_hex=sha,
        leaf=leaf_for_sha256(sha),
        proof=[],
        root=tree.root,
        chain_id=chain.w3.eth.chain_id,
        contract=their_registry.address,
        tx_hash=receipt["transactionHash"],
        block_number=receipt["blockNumber"],
        batch_count=1,
        leaf_index=0,
    )

    response = client.post(
        reverse("provenance:verify"), {"file": _upload("p.json", json.dumps(doc).encode())}
    )

    check = response.context["document_check"]
    assert not check.verified and "recorded no batch" in check.reason


@pytest.mark.parametrize(
    "junk",
    [
        {"chain_id": 10**30, "root": "0x" + "00" * 32},
        {"chain_id": True, "root": "0x" + "00" * 32},
        {"chain_id": 1, "root": ["not", "a", "root"]},
        {},
    ],
)
def test_a_malformed_proof_file_is_not_verified_and_never_an_error(db, client, chain, junk):
    doc = {"version": 1, "kind": "atelier.provenance.proof", "sha256": "ab" * 32, **junk}

    response = client.post(
        reverse("provenance:verify"), {"file": _upload("p.json", json.dumps(doc).encode())}
    )

    assert response.status_code == 200
    assert not response.context["document_check"].verified


def test_a_deeply_nested_json_upload_is_hashed_like_any_file(db, client, chain):
    data = b'{"a":' + b"[" * 200_000

    response = client.post(reverse("provenance:verify"), {"file": _upload("p.json", data)})

    assert response.status_code == 200
    assert response.context["lookup"].sha256 == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- privacy


def test_a_stranger_learns_chain_facts_but_not_whose_output_it_is(
    db, client, chain, project, people
):
    data = png_bytes((1, 2, 3))
    output = image_output(project, people["member"], data)
    anchor(chain, project, [output])

    html = client.get(verify_url(output.sha256)).content.decode()
    api = client.get(reverse("api:verify", args=[output.sha256])).content.decode()
    proof = client.get(reverse("provenance:proof", args=[output.sha256])).content.decode()

    for text in (html, api, proof):
        assert SECRET_PROMPT not in text
        assert project.name not in text
        assert f"/projects/{project.pk}/" not in text
        assert people["member"].username not in text.replace("membership", "")
    assert '"output' not in api and '"project' not in api


# --------------------------------------------------------------------------- the API


def test_the_api_answers_anyone_with_the_record_the_proof_and_the_check(
    db, client, chain, project, people
):
    (output,) = outputs(project, people["member"], 1)
    batch = anchor(chain, project, [output])

    body = client.get(reverse("api:verify", args=[output.sha256])).json()

    assert body["verified"] is True and body["state"] == "final"
    assert body["record"]["tx_hash"] == batch.tx_hash
    assert body["record"]["block_number"] == batch.block_number
    assert body["record"]["submitter"] == chain.signer.address
    assert body["record"]["block_time"]
    assert body["proof"]["root"] == batch.root
    assert verify_document(body["proof"], w3=chain.w3).verified


def test_the_api_says_not_verified_unknown_and_malformed_in_its_error_shape(
    db, client, chain, project, people
):
    (output,) = outputs(project, people["member"], 1)
    anchor(chain, project, [output], on_chain=False)

    missing_root = client.get(reverse("api:verify", args=[output.sha256]))
    unknown = client.get(reverse("api:verify", args=["ef" * 32]))
    malformed = client.get(reverse("api:verify", args=["xyz"]))

    assert missing_root.status_code == 200
    assert missing_root.json()["verified"] is False and missing_root.json()["reason"]
    assert unknown.status_code == 404 and unknown.json()["error"]["state"] == "unknown"
    assert malformed.status_code == 400 and "64 hexadecimal" in malformed.json()["error"]["message"]


# --------------------------------------------------------------------------- upload bound


def test_the_verifier_takes_an_image_sized_body_from_anyone_and_no_more():
    scope = {"type": "http", "path": "/verify/", "headers": []}

    assert async_to_sync(route_limit)(scope) == IMAGE_UPLOAD_CAP + FORM_OVERHEAD
    scope = {"type": "http", "path": verify_url("ab" * 32), "headers": []}
    assert async_to_sync(route_limit)(scope) < IMAGE_UPLOAD_CAP  # only the form takes files


@pytest.mark.django_db(transaction=True)
def test_an_upload_over_the_verifiers_cap_is_refused_unread():
    from tests.services.test_upload_limits import request

    response = request(reverse("provenance:verify"), size=IMAGE_UPLOAD_CAP + 2 * FORM_OVERHEAD)

    assert response["status"] == 413 and response["read"] == 0


# --------------------------------------------------------------------------- the project page


def test_a_stranger_gets_404_and_members_see_the_batches(db, client, chain, project, people):
    own = outputs(project, people["member"], 3)
    batch = anchor(chain, project, own[:2])
    ProvenanceRecord.objects.create(
        output=own[2],
        project=project,
        sha256=own[2].sha256,
        leaf="0x" + leaf_for_sha256(own[2].sha256).hex(),
    )
    url = reverse("provenance:project", args=[project.pk])

    client.force_login(people["outsider"])
    assert client.get(url).status_code == 404
    client.force_login(people["viewer"])
    response = client.get(url)

    assert response.status_code == 200
    assert response.context["counts"] == {"pending": 1, "batched": 0, "final": 2}
    html = response.content.decode()
    assert f'data-batch="{batch.pk}"' in html and batch.tx_hash in html
    assert str(batch.gas_used) in html
    assert 'name="mode"' not in html  # viewers see the mode, admins change it


def test_a_batch_of_another_project_sharing_a_leaf_is_listed_without_its_name(
    db, client, chain, project, people
):
    from apps.projects.models import Project

    other = Project.objects.create(name="Other team")
    theirs = factories.make_output(other, None, text="same", moderation=Moderation.APPROVED)
    batch = anchor(chain, other, [theirs])
    (mine,) = outputs(project, people["member"], 1)
    Output.objects.filter(pk=mine.pk).update(sha256=theirs.sha256)
    ProvenanceRecord.objects.create(
        output=mine,
        project=project,
        sha256=theirs.sha256,
        leaf="0x" + leaf_for_sha256(theirs.sha256).hex(),
        state=RecordState.FINAL,
        batch=batch,
        leaf_index=0,
        shared_leaf=True,
    )
    client.force_login(people["viewer"])

    response = client.get(reverse("provenance:project", args=[project.pk]))

    [row] = response.context["rows"]
    assert row["batch"] == batch and row["shared"] and row["mine"] == 1
    assert "Other team" not in response.content.decode()


def test_batches_are_paginated_newest_first(db, client, chain, project, people):
    for output in outputs(project, people["member"], pages.BATCHES_PAGE_SIZE + 2):
        anchor(chain, project, [output], on_chain=False)
    client.force_login(people["viewer"])
    url = reverse("provenance:project", args=[project.pk])

    first = client.get(url).context["rows"]
    second = client.get(url, {"page": 2}).context["rows"]

    assert len(first) == pages.BATCHES_PAGE_SIZE and len(second) == 2
    ids = [r["batch"].pk for r in first + second]
    assert ids == sorted(ids, reverse=True)


def test_only_a_project_admin_changes_the_mode(db, client, project, people):
    url = reverse("provenance:project", args=[project.pk])
    for who in ("member", "reviewer", "viewer"):
        client.force_login(people[who])
        assert client.post(url, {"mode": Mode.ALL}).status_code == 403
    client.force_login(people["outsider"])
    assert client.post(url, {"mode": Mode.ALL}).status_code == 404
    assert not ProvenanceSettings.objects.exists()

    client.force_login(people["admin"])
    response = client.post(url, {"mode": Mode.OFF})

    assert response.status_code == 302 and response.url == url
    assert ProvenanceSettings.objects.get(project=project).mode == Mode.OFF
    assert AuditEvent.objects.filter(action="provenance.mode").exists()
    assert 'name="mode"' in client.get(url).content.decode()


def test_an_unknown_mode_changes_nothing_and_says_why(db, client, project, people):
    client.force_login(people["admin"])
    url = reverse("provenance:project", args=[project.pk])

    response = client.post(url, {"mode": "sometimes"}, follow=True)

    assert "Unknown provenance mode" in response.content.decode()
    assert not ProvenanceSettings.objects.exists()


# --------------------------------------------------------------------------- badges


def test_the_gallery_and_output_page_show_the_on_chain_badge(db, client, chain, project, people):
    final, waiting, plain = outputs(project, people["member"], 3)
    anchor(chain, project, [final])
    ProvenanceRecord.objects.create(
        output=waiting,
        project=project,
        sha256=waiting.sha256,
        leaf="0x" + leaf_for_sha256(waiting.sha256).hex(),
    )
    client.force_login(people["viewer"])

    gallery = client.get(reverse("galleries:index", args=[project.pk])).content.decode()

    assert gallery.count("pv-badge-final") == 1 and gallery.count("pv-badge-recording") == 1
    assert f'href="{verify_url(final.sha256)}"' in gallery
    detail = client.get(reverse("galleries:output", args=[project.pk, final.pk])).content.decode()
    assert f'href="{verify_url(final.sha256)}"' in detail
    other = client.get(reverse("galleries:output", args=[project.pk, plain.pk])).content.decode()
    assert "pv-badge" not in other


def _bulk_outputs(project, user, n: int, *, start: int) -> None:
    created = Output.objects.bulk_create(
        [
            Output(
                project=project,
                created_by=user,
                kind="text",
                text=f"answer {i}",
                sha256=f"{i:064x}",
                moderation=Moderation.APPROVED,
            )
            for i in range(start, start + n)
        ]
    )
    ProvenanceRecord.objects.bulk_create(
        [
            ProvenanceRecord(
                output=o,
                project=project,
                sha256=o.sha256,
                leaf="0x" + "00" * 32,
                state=RecordState.FINAL if i % 2 else RecordState.PENDING,
            )
            for i, o in enumerate(created)
            if i % 3
        ]
    )


def test_badges_keep_the_gallery_at_a_constant_number_of_queries(db, client, project, people):
    _bulk_outputs(project, people["member"], 100, start=0)
    client.force_login(people["viewer"])
    with CaptureQueriesContext(connection) as small:
        first = client.get(reverse("galleries:index", args=[project.pk]))
    _bulk_outputs(project, people["member"], 9900, start=100)

    with CaptureQueriesContext(connection) as large:
        response = client.get(reverse("galleries:index", args=[project.pk]), {"page": 3})

    assert "pv-badge-final" in first.content.decode()
    assert "pv-badge-recording" in response.content.decode()
    assert Output.objects.count() == 10000
    assert len(large.captured_queries) == len(small.captured_queries), [
        q["sql"] for q in large.captured_queries
    ]


# --------------------------------------------------------------------------- language


def test_the_verifier_speaks_chinese_to_a_chinese_browser(db, client, chain, project, people):
    (output,) = outputs(project, people["member"], 1)
    anchor(chain, project, [output])

    page = client.get(verify_url(output.sha256), headers={"accept-language": "zh-CN"})
    translation.deactivate()

    text = page.content.decode()
    assert '<html lang="zh-hans">' in text
    for zh in ("验证输出", "已验证", "登记合约", "下载证明（JSON）"):
        assert zh in text
    assert "Verify an output" not in text
