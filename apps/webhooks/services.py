"""Every write of the webhooks: the outbox (`emit`), the webhooks themselves, and delivery.

`emit` is called by the apps above this one inside the transaction of the change it reports
(a job's final state, a flag, a review decision, a final anchor batch): the delivery rows commit
or roll back with that change, and the Celery message that points at them is sent after commit.
The database is the truth, as for jobs (DESIGN.md): a lost message only delays a delivery, the
periodic sweep sends it again, and a conditional UPDATE (the claim) lets one worker POST it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.webhooks import payloads, signing, transport
from apps.webhooks.models import (
    PING,
    DeliveryStatus,
    EventType,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)

log = logging.getLogger(__name__)

DELIVER_TASK = "atelier.webhooks.deliver"
QUEUE = "cpu"
TIMEOUT_SECONDS = 10.0
# Waits after the 1st, 2nd, ... failed attempt; the attempt after the last wait is the last one.
BACKOFF_SECONDS = (10, 60, 300, 1800, 7200)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
# A worker holds a delivery this long while it POSTs (timeouts are 10 s per socket operation).
LOCK_SECONDS = 60
# A due delivery whose message was sent this long ago without an attempt is sent again.
REENQUEUE_AFTER_SECONDS = 30
SWEEP_EVERY_SECONDS = 5.0
SWEEP_LIMIT = 500
# provenance.confirmed lists at most this many records per event (bodies stay ~100 KB).
RECORDS_PER_EVENT = 1000
USER_AGENT = "Atelier-Webhooks/1"


def allow_private() -> bool:
    """settings.ATELIER["WEBHOOKS_ALLOW_PRIVATE"]: receivers on private or loopback addresses
    (development, tests); False in production."""
    return bool(settings.ATELIER.get("WEBHOOKS_ALLOW_PRIVATE", False))


# --------------------------------------------------------------------------- the outbox


def subscribers(*, project_id: int, event_type: str) -> list[Webhook]:
    """The project's active webhooks that want `event_type` (filtered here: SQLite has no JSON
    containment lookup, and a project has a handful of webhooks)."""
    hooks = Webhook.objects.filter(project_id=project_id, active=True).only("pk", "events")
    return [hook for hook in hooks if hook.wants(event_type)]


def emit(
    *,
    project_id: int,
    type: str,
    data: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
) -> list[WebhookDelivery]:
    """Record `type` for every webhook of the project that wants it, in the caller's
    transaction, and queue the deliveries once it commits. `data` may be a callable: it is only
    built when some webhook wants the event (most projects have none)."""
    hooks = subscribers(project_id=project_id, event_type=type)
    if not hooks:
        return []
    body_data = dict(data() if callable(data) else data)
    return deliveries_create(hooks=hooks, project_id=project_id, type=type, data=body_data)


def deliveries_create(
    *,
    hooks: Iterable[Webhook],
    project_id: int,
    type: str,
    data: dict[str, Any],
    created: int | None = None,
    redelivery_of: WebhookDelivery | None = None,
) -> list[WebhookDelivery]:
    """One pending delivery per hook, marked as sent now, with the message sent after commit."""
    now = timezone.now()
    created = int(now.timestamp()) if created is None else created
    deliveries = []
    # No savepoint: the rows belong to the caller's transaction, all or nothing.
    with transaction.atomic(savepoint=False):
        for hook in hooks:
            delivery_id = uuid.uuid4()
            deliveries.append(
                WebhookDelivery.objects.create(
                    uuid=delivery_id,
                    webhook_id=hook.pk,
                    project_id=project_id,
                    type=type,
                    payload={
                        "id": str(delivery_id),
                        "type": type,
                        "created": created,
                        "project": project_id,
                        "data": data,
                    },
                    next_attempt_at=now,
                    enqueued_at=now,
                    redelivery_of=redelivery_of,
                )
            )
        ids = [d.pk for d in deliveries]
        transaction.on_commit(lambda: publish(ids))
    return deliveries


def job_finished_emit(*, project_id: int, state: str, load: Callable[[], Any]) -> None:
    """job.succeeded / job.failed / job.cancelled; `load` reads the job row (only when some
    webhook wants the event)."""
    emit(project_id=project_id, type=f"job.{state}", data=lambda: payloads.job_data(load()))


def output_flagged_emit(*, flag: Any, output: Any) -> None:
    """output.flagged: a moderation check flagged `output` as it was made (`flag`: its Flag)."""
    emit(
        project_id=output.project_id,
        type=EventType.OUTPUT_FLAGGED,
        data=lambda: payloads.flag_data(flag, output),
    )


def output_decided_emit(*, decision: Any, output: Any) -> None:
    """output.approved / output.rejected: a reviewer's ReviewDecision on `output`."""
    emit(
        project_id=output.project_id,
        type=f"output.{decision.decision}",
        data=lambda: payloads.decision_data(decision, output),
    )


def provenance_confirmed_emit(*, batch: Any, records: Any) -> int:
    """provenance.confirmed for a batch that just became final: one event per project with
    records in it (a batch can hold other projects' copies of a leaf), each listing that
    project's records (output id, SHA-256), in parts of RECORDS_PER_EVENT. `records`: the
    batch's ProvenanceRecord queryset. Returns the deliveries written."""
    written = 0
    project_ids = sorted(set(records.order_by().values_list("project_id", flat=True).distinct()))
    for project_id in project_ids:
        hooks = subscribers(project_id=project_id, event_type=EventType.PROVENANCE_CONFIRMED)
        if not hooks:
            continue
        rows = payloads.record_rows(
            records.filter(project_id=project_id).order_by("pk").values("output_id", "sha256")
        )
        parts = [rows[i : i + RECORDS_PER_EVENT] for i in range(0, len(rows), RECORDS_PER_EVENT)]
        batch_info = payloads.batch_data(batch, project_id=project_id)
        for number, part in enumerate(parts, start=1):
            data = {
                "batch": batch_info,
                "records": part,
                "count": len(rows),
                "part": number,
                "parts": len(parts),
            }
            written += len(
                deliveries_create(
                    hooks=hooks,
                    project_id=project_id,
                    type=EventType.PROVENANCE_CONFIRMED,
                    data=data,
                )
            )
    return written


def publish(delivery_ids: Iterable[int]) -> int:
    """Send each delivery's pointer to the `cpu` queue; one that cannot be sent is left for the
    sweep's next round. Returns how many were sent."""
    from webapp.celery import app

    sent = 0
    for pk in delivery_ids:
        try:
            app.send_task(
                DELIVER_TASK,
                args=[pk],
                queue=QUEUE,
                retry=True,
                retry_policy={
                    "max_retries": 2,
                    "interval_start": 0,
                    "interval_step": 0.2,
                    "interval_max": 0.5,
                },
            )
        except Exception:
            log.warning("could not queue webhook delivery %s; the sweep will", pk, exc_info=True)
            WebhookDelivery.objects.filter(pk=pk, status=DeliveryStatus.PENDING).update(
                enqueued_at=None
            )
        else:
            sent += 1
    return sent


# --------------------------------------------------------------------------- delivery


def due(now) -> Q:
    """Pending deliveries whose attempt is due and that no live worker holds."""
    return Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now) & (
        Q(locked_until__isnull=True) | Q(locked_until__lt=now)
    )


def body_bytes(payload: Mapping[str, Any]) -> bytes:
    """The body as sent: the stored payload in a fixed key order, compact UTF-8 JSON."""
    ordered = {key: payload.get(key) for key in ("id", "type", "created", "project", "data")}
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def request_headers(*, secret: str, body: bytes, delivery: WebhookDelivery) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.HEADER: signing.sign(secret, body),
        "Atelier-Event": delivery.type,
        "Atelier-Delivery": str(delivery.uuid),
    }


def delivery_attempt(*, delivery_id: int) -> WebhookAttempt | None:
    """POST one due delivery and log the attempt. None when there is nothing to do: delivered,
    failed, not due yet, or held by another worker (a duplicate message)."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(due(now), pk=delivery_id).update(
        locked_until=now + timedelta(seconds=LOCK_SECONDS), attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:
        return None  # its webhook was deleted meanwhile (the deliveries go with it)
    hook = delivery.webhook
    if not hook.active:
        result = transport.PostResult(None, "", "Not sent: the webhook is disabled", 0.0)
    else:
        body = body_bytes(delivery.payload)
        result = transport.post(
            hook.url,
            body,
            request_headers(secret=hook.secret, body=body, delivery=delivery),
            timeout=TIMEOUT_SECONDS,
            allow_private=allow_private(),
        )
    try:
        return attempt_record(
            delivery=delivery, number=delivery.attempts, started_at=now, result=result
        )
    except IntegrityError:
        # The webhook (and this delivery) was deleted while the request was out.
        log.info("webhook delivery %s was deleted during its attempt", delivery_id)
        return None


def attempt_record(
    *, delivery: WebhookDelivery, number: int, started_at, result: transport.PostResult
) -> WebhookAttempt:
    """Log attempt `number` and move the delivery on: delivered on a 2xx, failed after the last
    attempt (or at once when its webhook is disabled), otherwise due again after the back-off.
    Fenced by `number`: a worker that lost its hold logs its attempt and changes nothing else."""
    finished = timezone.now()
    error = result.error
    if not result.ok and not error and result.status_code is not None:
        error = f"HTTP {result.status_code}"
        if 300 <= result.status_code < 400:
            error += " (redirects are not followed)"
    fields: dict[str, Any] = {
        "locked_until": None,
        "enqueued_at": None,
        "last_status_code": result.status_code,
        "last_error": error,
    }
    if result.ok:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=finished, next_attempt_at=None)
    elif number >= MAX_ATTEMPTS or not delivery.webhook.active:
        fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    else:
        wait = BACKOFF_SECONDS[min(number, len(BACKOFF_SECONDS)) - 1]
        fields["next_attempt_at"] = finished + timedelta(seconds=wait)
    with transaction.atomic():
        attempt = WebhookAttempt.objects.create(
            delivery_id=delivery.pk,
            number=number,
            started_at=started_at,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            response_body=result.response_body[: transport.BODY_KEPT],
            error=error,
            ok=result.ok,
        )
        WebhookDelivery.objects.filter(
            pk=delivery.pk, attempts=number, status=DeliveryStatus.PENDING
        ).update(**fields)
    return attempt


def deliveries_sweep(*, now=None, limit: int = SWEEP_LIMIT) -> int:
    """The scheduler's round: queue again the due deliveries whose message was never sent, or
    sent a while ago without an attempt (a killed worker, a flushed Redis), and the retries
    whose back-off has passed. Each is marked with a conditional UPDATE, so two sweeps send it
    once; a duplicate message is harmless anyway (the claim). Returns how many were queued."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=REENQUEUE_AFTER_SECONDS)
    rows = list(
        WebhookDelivery.objects.filter(due(now))
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", "enqueued_at")[:limit]
    )
    marked = []
    for pk, previously in rows:
        same = Q(enqueued_at__isnull=True) if previously is None else Q(enqueued_at=previously)
        if WebhookDelivery.objects.filter(same, pk=pk).update(enqueued_at=now):
            marked.append(pk)
    return publish(marked) if marked else 0


# --------------------------------------------------------------------------- webhooks


def clean_events(events: Iterable[str]) -> list[str]:
    """The events in EventType's order, once each; ValidationError for an unknown one."""
    wanted = set(events)
    unknown = sorted(wanted - set(EventType.values))
    if unknown:
        raise ValidationError({"events": _("Unknown events: %s") % ", ".join(unknown)})
    if not wanted:
        raise ValidationError({"events": _("Choose at least one event")})
    return [value for value in EventType.values if value in wanted]


def clean_url(url: str) -> str:
    url = (url or "").strip()
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        raise ValidationError({"url": _("Enter a URL without spaces")})
    try:
        transport.check_url(url, allow_private=allow_private())
    except transport.RefusedURL as exc:
        raise ValidationError({"url": str(exc)}) from None
    return url


def url_for_audit(url: str) -> str:
    """The URL without its query or credentials: a receiver's token often rides there."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def webhook_create(
    *, project, actor, url: str, events: Iterable[str], active: bool = True, request=None
) -> Webhook:
    """A new webhook with a fresh secret (audited)."""
    hook = Webhook(
        project=project,
        url=clean_url(url),
        events=clean_events(events),
        active=active,
        secret=signing.new_secret(),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    hook.full_clean()
    with transaction.atomic():
        hook.save()
        audit_record(
            action="webhook.create",
            actor=actor,
            project=project,
            target=hook,
            request=request,
            data={"url": url_for_audit(hook.url), "events": hook.events, "active": active},
        )
    return hook


def webhook_update(
    *, webhook: Webhook, actor, url: str, events: Iterable[str], active: bool, request=None
) -> Webhook:
    """Change a webhook's URL, events or whether it is active (audited)."""
    webhook.url = clean_url(url)
    webhook.events = clean_events(events)
    webhook.active = active
    webhook.full_clean()
    with transaction.atomic():
        webhook.save(update_fields=["url", "events", "active", "updated_at"])
        audit_record(
            action="webhook.update",
            actor=actor,
            project=webhook.project,
            target=webhook,
            request=request,
            data={"url": url_for_audit(webhook.url), "events": webhook.events, "active": active},
        )
    return webhook


def webhook_delete(*, webhook: Webhook, actor, request=None) -> None:
    """Delete a webhook and its delivery log (the audit log keeps that it existed)."""
    with transaction.atomic():
        audit_record(
            action="webhook.delete",
            actor=actor,
            project=webhook.project,
            target=webhook,
            request=request,
            data={"url": url_for_audit(webhook.url), "events": webhook.events},
        )
        webhook.delete()


def webhook_rotate_secret(*, webhook: Webhook, actor, request=None) -> Webhook:
    """A new secret: deliveries from now on are signed with it (audited, the secret is not)."""
    webhook.secret = signing.new_secret()
    with transaction.atomic():
        webhook.save(update_fields=["secret", "updated_at"])
        audit_record(
            action="webhook.secret",
            actor=actor,
            project=webhook.project,
            target=webhook,
            request=request,
        )
    return webhook


def webhook_send_test(*, webhook: Webhook, actor) -> WebhookDelivery:
    """Queue a `ping` delivery to this webhook now, whatever events it asked for."""
    if not webhook.active:
        raise ValidationError(_("This webhook is disabled: enable it to send a test"))
    [delivery] = deliveries_create(
        hooks=[webhook],
        project_id=webhook.project_id,
        type=PING,
        data={
            "webhook_id": webhook.pk,
            "sent_by_id": actor.pk if getattr(actor, "is_authenticated", False) else None,
        },
    )
    return delivery


def delivery_redeliver(*, delivery: WebhookDelivery, actor) -> WebhookDelivery:
    """Send a delivery's event again, as a new delivery (a new id, the same type, `created` and
    data) with its own attempts."""
    hook = delivery.webhook
    if not hook.active:
        raise ValidationError(_("This webhook is disabled: enable it to redeliver"))
    payload = delivery.payload or {}
    [again] = deliveries_create(
        hooks=[hook],
        project_id=delivery.project_id,
        type=delivery.type,
        data=dict(payload.get("data") or {}),
        created=payload.get("created"),
        redelivery_of=delivery,
    )
    return again
