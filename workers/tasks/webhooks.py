"""Celery glue for webhook deliveries: the message carries a delivery id; the row is the truth."""

from celery import shared_task


@shared_task(
    name="atelier.webhooks.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def deliver(delivery_id: int) -> str:
    """POST one due delivery (apps.webhooks.services.delivery_attempt). A duplicate message, or
    one for a delivery already done, finds nothing to claim and returns."""
    # Imported here: Celery's Django fix-up sets Django up before the first task runs.
    from apps.webhooks.services import delivery_attempt

    attempt = delivery_attempt(delivery_id=int(delivery_id))
    if attempt is None:
        return "nothing to do"
    return "delivered" if attempt.ok else (attempt.error or f"HTTP {attempt.status_code}")
