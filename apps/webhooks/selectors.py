"""Reads of the webhooks page: who may open it (the project's admins), and the project's
webhooks and latest deliveries."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from apps.projects.selectors import ProjectAccess, project_access
from apps.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

DELIVERIES_SHOWN = 50


def webhooks_access(*, user, project_id: int) -> ProjectAccess:
    """The page is for the project's admins (the capability that manages members: receivers see
    the project's activity); other members get 403, strangers 404, as anywhere."""
    return project_access(user=user, project_id=project_id, need="manage_members")


def project_webhooks(*, project) -> QuerySet[Webhook]:
    return Webhook.objects.filter(project=project).order_by("id")


def project_webhook(*, project, webhook_id) -> Webhook:
    """One of the project's webhooks; 404 for another project's (or none)."""
    try:
        return Webhook.objects.select_related("project").get(pk=int(webhook_id), project=project)
    except (Webhook.DoesNotExist, TypeError, ValueError):
        raise Http404("No such webhook") from None


def project_delivery(*, project, delivery_id) -> WebhookDelivery:
    """One of the project's deliveries; 404 for another project's (or none)."""
    try:
        return WebhookDelivery.objects.select_related("webhook").get(
            pk=int(delivery_id), project=project
        )
    except (WebhookDelivery.DoesNotExist, TypeError, ValueError):
        raise Http404("No such delivery") from None


def recent_deliveries(*, project, limit: int = DELIVERIES_SHOWN) -> list[WebhookDelivery]:
    """The project's latest deliveries, newest first, each with its attempts."""
    attempts = Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number"))
    return list(
        WebhookDelivery.objects.filter(project=project)
        .select_related("webhook")
        .prefetch_related(attempts)
        .order_by("-created_at", "-id")[:limit]
    )
