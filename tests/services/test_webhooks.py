"""Webhooks: signed bodies, one delivery per matching webhook of the project (never another
project's), written with the change that causes it, retried with back-off against a real local
receiver, refused for private addresses, and the admins-only page."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.jobs.services import job_cancel, job_claim, job_finish
from apps.jobs.states import JobState
from apps.moderation.services import ruleset_current, ruleset_save
from apps.outputs.models import Moderation
from apps.projects.models import Membership, Project
from apps.projects.selectors import project_access
from apps.provenance.models import AnchorBatch, BatchState, ProvenanceRecord, RecordState
from apps.provenance.transitions import batch_finalize
from apps.review.services import output_decide
from apps.webhooks import services, signing, transport
from apps.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
from apps.webhooks.payloads import result_summary
from tests import factories

JOB_EVENTS = ["job.succeeded", "job.failed", "job.cancelled"]


# --------------------------------------------------------------------------- a real receiver


class Receiver:
    """A local HTTP receiver in a thread: records every request (headers, raw body, whether its
    signature verified with `secret`) and answers with `statuses` in turn (the last repeats).
    With a secret, a request whose signature does not verify gets 401."""

    def __init__(self, statuses=(200,), secret: str | None = None, location: str = ""):
        self.statuses = list(statuses)
        self.secret = secret
        self.location = location
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                header = self.headers.get(signing.HEADER, "")
                verified = (
                    signing.verify_signature(receiver.secret, header, body)
                    if receiver.secret
                    else None
                )
                with receiver.lock:
                    index = len(receiver.requests)
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                            "verified": verified,
                        }
                    )
                status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                if verified is False:
                    status = 401
                answer = f"answer {index + 1}: {status}".encode()
                self.send_response(status)
                if receiver.location and 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/atelier?team=qa"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, n: int, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"the receiver got {len(self.requests)} of {n} requests")


@pytest.fixture
def allow_private(monkeypatch):
    monkeypatch.setitem(django_settings.ATELIER, "WEBHOOKS_ALLOW_PRIVATE", True)


def hook(project, url="https://hooks.example.com/in", events=JOB_EVENTS, active=True, **extra):
    """A webhook made as the page makes it (a fresh secret), but for any URL."""
    return Webhook.objects.create(
        project=project,
        url=url,
        events=list(events),
        active=active,
        secret=signing.new_secret(),
        **extra,
    )


def deliveries(webhook) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(webhook=webhook).order_by("id"))


def make_due(delivery) -> None:
    """Time passes: the delivery's next attempt is due now (no sleeping through the back-off)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


# --------------------------------------------------------------------------- signature


def test_a_signature_verifies_for_the_exact_body_and_secret():
    secret = signing.new_secret()
    body = b'{"id":"d1","type":"ping","data":{}}'

    header = signing.sign(secret, body)

    assert header.startswith("t=") and ",v1=" in header
    assert signing.verify_signature(secret, header, body)
    assert signing.verify_signature(secret, header, body.decode())  # str or bytes alike


def test_a_tampered_body_or_another_secret_does_not_verify():
    secret = signing.new_secret()
    body = b'{"type":"job.succeeded","data":{"job":{"id":1}}}'
    header = signing.sign(secret, body)

    assert not signing.verify_signature(secret, header, body.replace(b"1", b"2"))
    assert not signing.verify_signature(secret, header, body + b" ")
    assert not signing.verify_signature(signing.new_secret(), header, body)
    assert not signing.verify_signature(secret, "", body)
    assert not signing.verify_signature(secret, "t=abc,v1=00", body)
    assert not signing.verify_signature(secret, header.split(",")[0], body)  # no v1 at all


def test_an_old_timestamp_is_refused_even_with_a_correct_signature():
    secret = signing.new_secret()
    body = b"{}"
    old = int(time.time()) - 301

    header = signing.sign(secret, body, timestamp=old)

    assert not signing.verify_signature(secret, header, body)  # default tolerance 300 s
    assert signing.verify_signature(secret, header, body, tolerance=600)
    future = signing.sign(secret, body, timestamp=int(time.time()) + 3600)
    assert not signing.verify_signature(secret, future, body)


def test_the_signature_is_stripes_scheme_over_timestamp_dot_body():
    import hashlib
    import hmac

    header = signing.sign("whsec_test", b'{"a":1}', timestamp=1700000000)

    expected = hmac.new(b"whsec_test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_each_webhook_gets_its_own_random_secret(db, project, people):
    a = services.webhook_create(
        project=project, actor=people["admin"], url="https://a.example.com/", events=JOB_EVENTS
    )
    b = services.webhook_create(
        project=project, actor=people["admin"], url="https://b.example.com/", events=JOB_EVENTS
    )
    before = a.secret

    services.webhook_rotate_secret(webhook=a, actor=people["admin"])

    a.refresh_from_db()
    assert a.secret.startswith("whsec_") and len(a.secret) > 40
    assert len({before, a.secret, b.secret}) == 3


# --------------------------------------------------------------------------- job events


def finish(job, target):
    if target == JobState.SUCCEEDED:
        return factories.job_succeed(job, result={"steps": 3})
    if target == JobState.FAILED:
        claimed = job_claim(job_id=job.pk, worker_id="tests")
        job_finish(job_id=job.pk, attempt=claimed.attempt, target=target, error="out of cheese")
    else:
        job_cancel(job=job, actor=job.created_by)
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("target", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_a_final_job_state_makes_one_delivery_per_matching_webhook_of_its_project_only(
    db, project, people, target
):
    wants_all = hook(project)
    wants_this = hook(project, events=[f"job.{target}"])
    wants_other = hook(project, events=["job.succeeded" if target != "succeeded" else "job.failed"])
    disabled = hook(project, active=False)
    elsewhere = Project.objects.create(name="Elsewhere")
    foreign = hook(elsewhere)
    job = factories.make_job(project, people["member"])

    job = finish(job, target)

    assert job.state == target
    for webhook in (wants_all, wants_this):
        [delivery] = deliveries(webhook)
        assert delivery.type == f"job.{target}"
        assert delivery.status == DeliveryStatus.PENDING
        assert delivery.project_id == project.pk
        body = delivery.payload
        assert body["id"] == str(delivery.uuid) and body["project"] == project.pk
        assert body["type"] == f"job.{target}"
        assert body["data"]["job"]["id"] == job.pk
        assert body["data"]["job"]["state"] == target
        assert body["data"]["job"]["kind"] == "test.steps"
        assert body["data"]["job"]["url"].endswith(f"/projects/{project.pk}/jobs/{job.pk}/")
    assert deliveries(wants_other) == []
    assert deliveries(disabled) == []
    assert deliveries(foreign) == [], "nothing is sent for another project"
    assert WebhookDelivery.objects.filter(project=elsewhere).count() == 0


def test_a_failed_job_reports_its_error_and_a_succeeded_one_only_numbers_of_its_result(
    db, project, people
):
    webhook = hook(project)
    ok = factories.make_job(project, people["member"])
    factories.job_succeed(
        ok, result={"runs": [{"output_id": 7, "text": "a secret answer", "tokens": 12}]}
    )
    bad = finish(factories.make_job(project, people["member"]), JobState.FAILED)

    succeeded, failed = deliveries(webhook)

    assert succeeded.payload["data"]["job"]["result"] == {"runs": [{"output_id": 7, "tokens": 12}]}
    assert "secret answer" not in json.dumps(succeeded.payload)
    assert failed.payload["data"]["job"]["error"] == "out of cheese"
    assert failed.payload["data"]["job"]["id"] == bad.pk


def test_payload_urls_are_paths_until_the_deployment_names_its_address(
    db, project, people, settings
):
    """A receiver cannot guess our host: with ATELIER_PUBLIC_URL set, the job's API and page
    URLs are absolute on it; without, they stay site-relative paths."""
    webhook = hook(project)
    settings.ATELIER = {**settings.ATELIER, "PUBLIC_URL": ""}
    finish(factories.make_job(project, people["member"]), JobState.FAILED)
    settings.ATELIER = {**settings.ATELIER, "PUBLIC_URL": "https://atelier.example.com"}
    job = finish(factories.make_job(project, people["member"]), JobState.FAILED)

    before, after = (d.payload["data"]["job"] for d in deliveries(webhook))
    assert before["url"].startswith("/") and before["page_url"].startswith("/")
    assert after["url"].startswith("https://atelier.example.com/")
    assert after["page_url"] == (
        f"https://atelier.example.com/projects/{project.pk}/jobs/{job.pk}/"
    )


def test_the_result_summary_keeps_numbers_and_ids_and_drops_text():
    result = {
        "version_id": 3,
        "created": True,
        "merged_path": "adapters/1/merged",
        "metrics": {"loss": 0.25, "nan": float("nan")},
        "outputs": [{"id": 1, "url": "/x"}, {"id": 2, "url": "/y"}],
        "deep": {"a": {"b": {"c": 1}}},
    }

    assert result_summary(result) == {
        "version_id": 3,
        "created": True,
        "metrics": {"loss": 0.25, "nan": None},
        "outputs": [{"id": 1}, {"id": 2}],
        "deep": {"a": {}},  # three levels down at most
    }


def test_a_job_transition_that_rolls_back_leaves_no_delivery(db, project, people):
    webhook = hook(project)
    job = factories.make_job(project, people["member"])
    claimed = job_claim(job_id=job.pk, worker_id="tests")

    with pytest.raises(RuntimeError), transaction.atomic():
        job_finish(job_id=job.pk, attempt=claimed.attempt, target=JobState.SUCCEEDED, result={})
        assert len(deliveries(webhook)) == 1  # written in the same transaction...
        raise RuntimeError("the worker's transaction fails after the state change")

    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert deliveries(webhook) == []  # ...so it rolled back with it


def test_a_transition_that_did_not_happen_sends_nothing(db, project, people):
    webhook = hook(project)
    job = finish(factories.make_job(project, people["member"]), JobState.SUCCEEDED)

    assert job_finish(job_id=job.pk, attempt=job.attempt, target=JobState.FAILED) is False

    assert [d.type for d in deliveries(webhook)] == ["job.succeeded"]


def test_the_delivery_is_queued_only_after_the_commit(
    db, project, people, django_capture_on_commit_callbacks
):
    hook(project)
    job = factories.make_job(project, people["member"])
    claimed = job_claim(job_id=job.pk, worker_id="tests")

    with django_capture_on_commit_callbacks() as callbacks:
        job_finish(job_id=job.pk, attempt=claimed.attempt, target=JobState.SUCCEEDED, result={})

    names = [getattr(cb, "__qualname__", "") for cb in callbacks]
    assert any("deliveries_create" in name for name in names), names


# --------------------------------------------------------------------------- other events


@pytest.fixture
def rules(project, people):
    ruleset_current(project.pk)
    rows = [{"kind": "keyword", "pattern": "zorblax", "category": "custom", "severity": "flag"}]
    return ruleset_save(project=project, rows=rows, actor=people["admin"], comment="t")


def test_a_flagged_output_sends_output_flagged_without_its_text(db, project, people, rules):
    webhook = hook(project, events=["output.flagged"])
    other = hook(Project.objects.create(name="Elsewhere"), events=["output.flagged"])

    output = factories.make_output(
        project,
        people["member"],
        text="all about zorblax",
        prompt="tell me about zorblax",
        moderation="flagged",  # what the rule makes of it (the factory's default would clear it)
    )

    assert output.moderation == Moderation.FLAGGED
    [delivery] = deliveries(webhook)
    data = delivery.payload["data"]
    assert data["output"]["id"] == output.pk and data["output"]["sha256"] == output.sha256
    assert data["output"]["moderation"] == "flagged"
    assert data["flag"]["categories"] == ["custom"]
    assert "zorblax" not in json.dumps(delivery.payload)
    assert deliveries(other) == []


def test_a_clean_output_sends_nothing(db, project, people, rules):
    webhook = hook(project, events=["output.flagged"])

    factories.make_output(project, people["member"], text="a kind answer")

    assert deliveries(webhook) == []


@pytest.mark.parametrize("approve", [True, False])
def test_a_reviewers_decision_sends_output_approved_or_rejected(
    db, project, people, rules, approve
):
    webhook = hook(project, events=["output.approved", "output.rejected"])
    output = factories.make_output(
        project, people["member"], text="zorblax again", moderation="flagged"
    )
    access = project_access(user=people["reviewer"], project_id=project.pk, need="review")

    output_decide(
        access=access,
        actor=people["reviewer"],
        output_id=output.pk,
        approve=approve,
        reason="" if approve else "mentions zorblax",
    )

    [delivery] = deliveries(webhook)
    verb = "approved" if approve else "rejected"
    assert delivery.type == f"output.{verb}"
    assert delivery.payload["data"]["decision"]["decision"] == verb
    assert delivery.payload["data"]["decision"]["decided_by_id"] == people["reviewer"].pk
    assert delivery.payload["data"]["output"]["moderation"] == verb
    assert "zorblax" not in json.dumps(delivery.payload)  # neither the text nor the reason


def test_a_final_batch_sends_one_provenance_event_per_project_with_its_own_records(
    db, project, people
):
    webhook = hook(project, events=["provenance.confirmed"])
    elsewhere = Project.objects.create(name="Elsewhere")
    foreign = hook(elsewhere, events=["provenance.confirmed"])
    silent = hook(project, events=["job.succeeded"])
    ours = [factories.make_output(project, people["member"], text=f"t{i}") for i in range(3)]
    theirs = factories.make_output(elsewhere, None, text="shared")
    batch = AnchorBatch.objects.create(
        project=project,
        chain_id=31337,
        contract="0x" + "1" * 40,
        state=BatchState.MINED,
        root="0x" + "ab" * 32,
        count=3,
        tx_hash="0x" + "cd" * 32,
        block_number=12,
    )
    for i, output in enumerate([*ours, theirs]):
        ProvenanceRecord.objects.create(
            output=output,
            project_id=output.project_id,
            sha256=output.sha256,
            leaf="0x" + f"{i:064x}",
            state=RecordState.BATCHED,
            batch=batch,
            leaf_index=i if output in ours else None,
            shared_leaf=output not in ours,
        )

    assert batch_finalize(batch_id=batch.pk, confirmations=3)

    [delivery] = deliveries(webhook)
    data = delivery.payload["data"]
    assert data["batch"]["id"] == batch.pk and data["batch"]["tx_hash"] == batch.tx_hash
    assert data["records"] == [{"output_id": o.pk, "sha256": o.sha256} for o in ours]
    assert (data["count"], data["part"], data["parts"]) == (3, 1, 1)
    [theirs_delivery] = deliveries(foreign)
    assert theirs_delivery.payload["data"]["records"] == [
        {"output_id": theirs.pk, "sha256": theirs.sha256}
    ]
    assert theirs_delivery.project_id == elsewhere.pk
    assert deliveries(silent) == []
    # Finalizing again does not happen, so nothing is sent twice.
    assert not batch_finalize(batch_id=batch.pk, confirmations=4)
    assert len(deliveries(webhook)) == 1


# --------------------------------------------------------------------------- delivery


def ping(webhook, actor=None) -> WebhookDelivery:
    return services.webhook_send_test(webhook=webhook, actor=actor)


def test_a_receiver_gets_the_signed_body_and_a_2xx_delivers(db, project, people, allow_private):
    with Receiver(statuses=[204]) as receiver:
        webhook = hook(project, url=receiver.url)
        receiver.secret = webhook.secret
        delivery = ping(webhook, people["admin"])

        attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert attempt is not None and attempt.ok and attempt.status_code == 204
    [request] = receiver.requests
    assert request["verified"] is True
    assert request["path"] == "/hooks/atelier?team=qa"
    body = json.loads(request["body"])
    assert body == {
        "id": str(delivery.uuid),
        "type": "ping",
        "created": delivery.payload["created"],
        "project": project.pk,
        "data": {"webhook_id": webhook.pk, "sent_by_id": people["admin"].pk},
    }
    assert request["headers"]["Atelier-Event"] == "ping"
    assert request["headers"]["Atelier-Delivery"] == str(delivery.uuid)
    assert request["headers"]["Content-Type"] == "application/json"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert services.delivery_attempt(delivery_id=delivery.pk) is None  # done: nothing to do
    assert len(receiver.requests) == 1


def test_a_failing_receiver_is_retried_with_backoff_then_the_delivery_fails(
    db, project, allow_private
):
    with Receiver(statuses=[500]) as receiver:
        webhook = hook(project, url=receiver.url)
        receiver.secret = webhook.secret
        delivery = ping(webhook)
        waits = []
        for number in range(1, services.MAX_ATTEMPTS + 1):
            before = timezone.now()
            attempt = services.delivery_attempt(delivery_id=delivery.pk)
            assert attempt is not None and attempt.number == number
            delivery.refresh_from_db()
            if number < services.MAX_ATTEMPTS:
                assert delivery.status == DeliveryStatus.PENDING
                waits.append(round((delivery.next_attempt_at - before).total_seconds()))
                # Not due yet: a duplicate message or an early sweep changes nothing.
                assert services.delivery_attempt(delivery_id=delivery.pk) is None
                make_due(delivery)

    assert waits == [10, 60, 300, 1800, 7200]
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.next_attempt_at is None
    assert delivery.attempts == services.MAX_ATTEMPTS == 6
    assert delivery.last_status_code == 500
    log = list(delivery.attempt_log.order_by("number"))
    assert [a.status_code for a in log] == [500] * 6
    assert [a.response_body for a in log] == [f"answer {n}: 500" for n in range(1, 7)]
    assert all(not a.ok and a.error == "HTTP 500" and a.duration_ms >= 0 for a in log)
    assert len(receiver.requests) == 6 and all(r["verified"] for r in receiver.requests)
    # The same event, byte for byte, each time (only the signature's timestamp may change).
    assert len({r["body"] for r in receiver.requests}) == 1
    make_due(delivery)
    assert services.delivery_attempt(delivery_id=delivery.pk) is None  # failed stays failed


def test_a_receiver_that_recovers_gets_the_delivery_on_a_retry(db, project, allow_private):
    with Receiver(statuses=[503, 200]) as receiver:
        delivery = ping(hook(project, url=receiver.url))
        services.delivery_attempt(delivery_id=delivery.pk)
        make_due(delivery)
        services.delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 2
    assert [a.status_code for a in delivery.attempt_log.order_by("number")] == [503, 200]


def test_a_redirect_is_not_followed_and_does_not_deliver(db, project, allow_private):
    with Receiver(statuses=[302], location="http://169.254.169.254/latest/meta-data/") as rx:
        delivery = ping(hook(project, url=rx.url))
        attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert attempt.status_code == 302 and not attempt.ok
    assert "redirects are not followed" in attempt.error
    assert len(rx.requests) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1


def test_an_unreachable_receiver_is_logged_as_an_error_and_retried(db, project, allow_private):
    with Receiver() as receiver:
        url = receiver.url
    delivery = ping(hook(project, url=url))  # the receiver is gone: connection refused

    attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert attempt.status_code is None and attempt.error
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_error == attempt.error


def test_a_private_address_is_refused_at_delivery_time_by_default(db, project, allow_private):
    with Receiver() as receiver:
        delivery = ping(hook(project, url=receiver.url))
        django_settings.ATELIER["WEBHOOKS_ALLOW_PRIVATE"] = False  # production's default

        attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert attempt.error.startswith("Refused:") and "not a public address" in attempt.error
    assert receiver.requests == [], "nothing reached the private address"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.9", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("not-an-ip", False),
    ],
)
def test_only_public_addresses_are_receivers_by_default(address, public):
    assert transport.address_is_public(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "https:///no-host",
        "http://127.0.0.1:8000/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://example.com/with space",
    ],
)
def test_a_receiver_url_that_is_not_public_http_is_refused_when_saved(db, project, people, url):
    with pytest.raises(ValidationError):
        services.webhook_create(project=project, actor=people["admin"], url=url, events=JOB_EVENTS)

    assert not Webhook.objects.exists()


def test_private_receivers_may_be_saved_when_the_setting_allows_them(
    db, project, people, allow_private
):
    webhook = services.webhook_create(
        project=project, actor=people["admin"], url="http://127.0.0.1:9/x", events=JOB_EVENTS
    )

    assert webhook.pk
    with pytest.raises(ValidationError):  # still never another scheme
        services.webhook_create(
            project=project, actor=people["admin"], url="file:///etc/passwd", events=JOB_EVENTS
        )


def test_a_disabled_webhooks_pending_delivery_fails_without_being_sent(db, project, allow_private):
    with Receiver() as receiver:
        webhook = hook(project, url=receiver.url)
        delivery = ping(webhook)
        Webhook.objects.filter(pk=webhook.pk).update(active=False)

        attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert "disabled" in attempt.error and receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED


def test_redeliver_sends_the_same_event_again_as_a_new_delivery(db, project, allow_private):
    with Receiver(statuses=[200]) as receiver:
        webhook = hook(project, url=receiver.url)
        delivery = ping(webhook)  # sent six times, refused six times:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, next_attempt_at=None, attempts=6
        )
        delivery.refresh_from_db()

        again = services.delivery_redeliver(delivery=delivery, actor=None)
        services.delivery_attempt(delivery_id=again.pk)

    again.refresh_from_db()
    assert again.status == DeliveryStatus.DELIVERED and again.redelivery_of_id == delivery.pk
    assert again.uuid != delivery.uuid and again.type == delivery.type
    sent = json.loads(receiver.requests[0]["body"])
    assert sent["id"] == str(again.uuid)
    assert sent["data"] == delivery.payload["data"]
    assert sent["created"] == delivery.payload["created"]


def test_two_workers_with_the_same_message_post_once(db, project, allow_private):
    with Receiver() as receiver:
        delivery = ping(hook(project, url=receiver.url))
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            locked_until=timezone.now() + timedelta(seconds=60)
        )  # another worker holds it

        assert services.delivery_attempt(delivery_id=delivery.pk) is None
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            locked_until=timezone.now() - timedelta(seconds=1)
        )  # ...and was killed mid-request: its hold passes
        assert services.delivery_attempt(delivery_id=delivery.pk).ok

    assert len(receiver.requests) == 1


def test_the_sweep_requeues_due_deliveries_once_and_leaves_the_rest(db, project):
    webhook = hook(project)
    lost = ping(webhook)  # its message was lost (a flushed Redis)
    WebhookDelivery.objects.filter(pk=lost.pk).update(enqueued_at=None)
    recent = ping(webhook)  # just sent: its message is on its way
    later = ping(webhook)  # a retry waiting for its back-off
    WebhookDelivery.objects.filter(pk=later.pk).update(
        enqueued_at=None, next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    done = ping(webhook)
    WebhookDelivery.objects.filter(pk=done.pk).update(status=DeliveryStatus.DELIVERED)

    assert services.deliveries_sweep() == 1
    assert services.deliveries_sweep() == 0  # marked: not sent again at once

    lost.refresh_from_db()
    recent.refresh_from_db()
    assert lost.enqueued_at is not None
    later_row = WebhookDelivery.objects.get(pk=later.pk)
    assert later_row.enqueued_at is None
    # Much later, the recent one's message never led to an attempt: sent again.
    assert services.deliveries_sweep(now=timezone.now() + timedelta(seconds=45)) == 2


def test_the_sweep_is_registered_with_the_scheduler():
    from apps.jobs.registry import periodic_tasks

    assert "webhooks.sweep" in {task.name for task in periodic_tasks()}


# --------------------------------------------------------------------------- the page


def page(project) -> str:
    return reverse("webhooks:list", args=[project.pk])


def login(client, user):
    assert client.login(username=user.username, password=f"pw-{user.username}")
    return client


def test_an_admin_adds_a_webhook_and_sends_a_test(client, project, people):
    login(client, people["admin"])

    response = client.post(
        page(project),
        {
            "action": "create",
            "url": "https://hooks.example.com/atelier",
            "events": ["job.succeeded", "output.flagged"],
            "active": "on",
        },
    )

    assert response.status_code == 302
    webhook = Webhook.objects.get(project=project)
    assert webhook.url == "https://hooks.example.com/atelier"
    assert webhook.events == ["job.succeeded", "output.flagged"] and webhook.active
    audit = AuditEvent.objects.get(action="webhook.create")
    assert audit.project_id == project.pk and audit.actor_id == people["admin"].pk
    assert webhook.secret not in json.dumps(audit.data)
    shown = client.get(page(project)).content.decode()
    assert webhook.secret in shown and "https://hooks.example.com/atelier" in shown

    response = client.post(page(project), {"action": "test", "webhook": webhook.pk})

    assert response.status_code == 302
    [delivery] = deliveries(webhook)
    assert delivery.type == "ping" and delivery.status == DeliveryStatus.PENDING
    shown = client.get(page(project)).content.decode()
    assert f'data-delivery-id="{delivery.pk}"' in shown


def test_an_admin_edits_disables_rotates_and_deletes_a_webhook(client, project, people):
    webhook = hook(project)
    secret = webhook.secret
    login(client, people["admin"])

    edit = client.get(page(project) + f"?edit={webhook.pk}")
    assert edit.status_code == 200 and 'id="edit-webhook"' in edit.content.decode()
    client.post(
        page(project),
        {
            "action": "update",
            "webhook": webhook.pk,
            "edit-url": "https://other.example.com/in",
            "edit-events": ["job.failed"],
        },
    )
    webhook.refresh_from_db()
    assert (webhook.url, webhook.events, webhook.active) == (
        "https://other.example.com/in",
        ["job.failed"],
        False,
    )
    client.post(page(project), {"action": "rotate", "webhook": webhook.pk})
    webhook.refresh_from_db()
    assert webhook.secret != secret

    client.post(page(project), {"action": "delete", "webhook": webhook.pk})

    assert not Webhook.objects.filter(pk=webhook.pk).exists()
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {
        "webhook.update",
        "webhook.secret",
        "webhook.delete",
    }


def test_a_bad_url_is_shown_as_a_form_error_and_nothing_is_saved(client, project, people):
    login(client, people["admin"])

    response = client.post(
        page(project), {"action": "create", "url": "file:///etc/passwd", "events": ["job.failed"]}
    )

    assert response.status_code == 400
    assert "Only http:// and https:// receivers are allowed" in response.content.decode()
    assert not Webhook.objects.exists()


def test_an_admin_redelivers_from_the_log(client, project, people):
    webhook = hook(project)
    delivery = ping(webhook)
    login(client, people["admin"])

    response = client.post(page(project), {"action": "redeliver", "delivery": delivery.pk})

    assert response.status_code == 302
    assert WebhookDelivery.objects.filter(redelivery_of=delivery).count() == 1


def test_the_delivery_log_shows_each_attempts_code_and_the_next_retry(client, project, people):
    webhook = hook(project)
    delivery = ping(webhook)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=1)
    services.attempt_record(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        result=transport.PostResult(500, "receiver exploded", "", 12.5),
    )
    login(client, people["admin"])

    text = client.get(page(project)).content.decode()

    row = text.split(f'data-delivery-id="{delivery.pk}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-role="code">500<' in row and "receiver exploded" in row
    assert "1/6" in row and "HTTP 500" in row
    retry = WebhookDelivery.objects.get(pk=delivery.pk).next_attempt_at
    assert timezone.localtime(retry).strftime("%Y-%m-%d %H:%M:%S") in row


@pytest.mark.parametrize("role", ["member", "reviewer", "viewer"])
def test_a_member_who_is_not_admin_cannot_see_or_use_the_page(client, project, people, role):
    webhook = hook(project)
    login(client, people[role])

    assert client.get(page(project)).status_code == 403
    response = client.post(page(project), {"action": "delete", "webhook": webhook.pk})

    assert response.status_code == 403
    assert Webhook.objects.filter(pk=webhook.pk).exists()


def test_a_non_member_gets_404(client, project, people):
    webhook = hook(project)
    login(client, people["outsider"])

    assert client.get(page(project)).status_code == 404
    assert client.post(page(project), {"action": "test", "webhook": webhook.pk}).status_code == 404
    assert deliveries(webhook) == []


def test_an_admin_of_another_project_cannot_reach_this_projects_webhooks(
    client, project, people, make_user
):
    webhook = hook(project)
    delivery = ping(webhook)
    other = Project.objects.create(name="Theirs")
    boss = make_user("boss")
    Membership.objects.create(project=other, user=boss, role="admin")
    login(client, boss)

    for data in (
        {"action": "delete", "webhook": webhook.pk},
        {"action": "rotate", "webhook": webhook.pk},
        {"action": "redeliver", "delivery": delivery.pk},
    ):
        assert client.post(page(other), data).status_code == 404
    assert client.get(page(other) + f"?edit={webhook.pk}").status_code == 404
    assert Webhook.objects.filter(pk=webhook.pk).exists()
    assert WebhookDelivery.objects.count() == 1


def test_the_settings_page_links_to_the_webhooks(client, project, people):
    login(client, people["admin"])

    settings_page = client.get(reverse("projects:settings", args=[project.pk])).content.decode()

    assert page(project) in settings_page


def test_the_page_speaks_chinese(client, project, people):
    hook(project)
    login(client, people["admin"])
    client.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    text = client.get(page(project)).content.decode()

    for zh in ("添加 Webhook", "发送测试", "投递记录", "任务成功"):
        assert zh in text, zh
