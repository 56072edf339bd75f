"""Webhooks with real parts: a real job run by a real Celery worker ends, and a real local HTTP
receiver gets the signed POST from that worker and verifies it; the scheduler's sweep sends
again what a flushed Redis lost and what a failing receiver refused."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from apps.jobs.states import JobState
from apps.projects.models import Project
from apps.webhooks import services, signing
from apps.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
from tests.integration.helpers import job_state, launch, wait_for
from tests.services.test_webhooks import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_receivers(processes, monkeypatch):
    """Receivers on 127.0.0.1 are allowed here and in the worker and scheduler processes."""
    monkeypatch.setitem(settings.ATELIER, "WEBHOOKS_ALLOW_PRIVATE", True)
    processes.env["ATELIER_WEBHOOKS_ALLOW_PRIVATE"] = "1"
    return processes


def webhook_for(project, receiver: Receiver, events) -> Webhook:
    webhook = Webhook.objects.create(
        project=project, url=receiver.url, events=list(events), secret=signing.new_secret()
    )
    receiver.secret = webhook.secret  # the receiver answers 401 unless the signature verifies
    return webhook


def drop_messages(delivery_id: int) -> int:
    """Remove the queued Celery messages for one delivery from the `cpu` queue's list."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    dropped = 0
    for raw in client.lrange(services.QUEUE, 0, -1):
        headers = json.loads(raw).get("headers") or {}
        if headers.get("task") == services.DELIVER_TASK and headers.get("argsrepr") == (
            f"[{delivery_id}]"
        ):
            dropped += client.lrem(services.QUEUE, 1, raw)
    return dropped


def test_a_real_job_ends_and_the_worker_posts_a_signed_event_to_the_receiver(
    private_receivers, project, member
):
    with Receiver() as receiver, Receiver() as bystander:
        webhook = webhook_for(project, receiver, ["job.succeeded", "job.failed"])
        elsewhere = Project.objects.create(name="Elsewhere")
        webhook_for(elsewhere, bystander, ["job.succeeded", "job.failed"])
        private_receivers.worker()

        job = launch(project, member, steps=3, step_seconds=0.01)

        wait_for(lambda: job_state(job) == JobState.SUCCEEDED, timeout=60, what="the job")
        [request] = receiver.wait_for(1, timeout=60)
        delivery = wait_for(
            lambda: WebhookDelivery.objects.filter(
                webhook=webhook, status=DeliveryStatus.DELIVERED
            ).first(),
            timeout=30,
            what="the delivery to be marked delivered",
        )

    assert request["verified"] is True
    assert signing.verify_signature(
        webhook.secret, request["headers"][signing.HEADER], request["body"]
    )
    body = json.loads(request["body"])
    assert body["type"] == "job.succeeded" and body["project"] == project.pk
    assert body["id"] == str(delivery.uuid)
    assert body["data"]["job"]["id"] == job.pk
    assert body["data"]["job"]["state"] == "succeeded"
    assert delivery.attempts == 1 and delivery.last_status_code == 200
    assert [a.status_code for a in delivery.attempt_log.all()] == [200]
    # Nothing for the other project's receiver, in the database or on the wire.
    assert not WebhookDelivery.objects.filter(project=elsewhere).exists()
    assert bystander.requests == []


def test_a_lost_message_and_a_failing_receiver_are_sent_again_by_the_sweep(
    private_receivers, project, people
):
    with Receiver(statuses=[500, 200]) as receiver:
        webhook = webhook_for(project, receiver, ["job.succeeded"])
        # No worker yet: the test event's message waits in Redis, and Redis loses it (only this
        # message: the Redis may be shared with other test runs).
        delivery = services.webhook_send_test(webhook=webhook, actor=people["admin"])
        assert drop_messages(delivery.pk) == 1
        # Time passes: the message has been out long enough to be sent again.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            enqueued_at=timezone.now() - timedelta(minutes=5)
        )
        private_receivers.scheduler(interval=0.3)
        private_receivers.worker()

        receiver.wait_for(1, timeout=60)  # refused with a 500: a retry is due in 10 s
        wait_for(
            lambda: (
                WebhookDelivery.objects.get(pk=delivery.pk).attempts == 1
                and WebhookDelivery.objects.get(pk=delivery.pk).locked_until is None
            ),
            what="the first attempt to be logged",
        )
        # Time passes again: the back-off is over.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        requests = receiver.wait_for(2, timeout=60)
        delivered = wait_for(
            lambda: WebhookDelivery.objects.filter(
                pk=delivery.pk, status=DeliveryStatus.DELIVERED
            ).first(),
            what="the retry to deliver",
        )

    assert [r["verified"] for r in requests] == [True, True]
    assert requests[0]["body"] == requests[1]["body"]  # the same event, signed anew
    assert delivered.attempts == 2
    assert [a.status_code for a in delivered.attempt_log.order_by("number")] == [500, 200]
