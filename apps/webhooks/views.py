"""The project's webhooks page (admins only): list, add, edit, delete, new secret, send a test,
and the delivery log with a redeliver button. Every change is a POST with an `action`."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from apps.webhooks import selectors, services
from apps.webhooks.forms import WebhookForm
from apps.webhooks.models import EventType


@login_required
@require_http_methods(["GET", "POST"])
def webhooks_page(request: HttpRequest, project_id: int) -> HttpResponse:
    access = selectors.webhooks_access(user=request.user, project_id=project_id)
    if request.method == "POST":
        return _act(request, access)
    editing = None
    edit_form = None
    if request.GET.get("edit"):
        editing = selectors.project_webhook(project=access.project, webhook_id=request.GET["edit"])
        edit_form = WebhookForm(
            initial={"url": editing.url, "events": editing.events, "active": editing.active},
            prefix="edit",
        )
    return _page(request, access, form=WebhookForm(), editing=editing, edit_form=edit_form)


def _page(request, access, *, form, editing=None, edit_form=None, status: int = 200):
    project = access.project
    return render(
        request,
        "webhooks/webhooks.html",
        {
            "project": project,
            "membership": access,
            "webhooks": selectors.project_webhooks(project=project),
            "deliveries": selectors.recent_deliveries(project=project),
            "form": form,
            "editing": editing,
            "edit_form": edit_form,
            "event_labels": dict(EventType.choices),
            "max_attempts": services.MAX_ATTEMPTS,
        },
        status=status,
    )


def _act(request: HttpRequest, access) -> HttpResponse:
    project = access.project
    action = request.POST.get("action", "create")
    back = redirect("webhooks:list", project.pk)
    try:
        if action == "create":
            form = WebhookForm(request.POST)
            if not form.is_valid():
                return _page(request, access, form=form, status=400)
            services.webhook_create(
                project=project, actor=request.user, request=request, **form.cleaned_data
            )
            messages.success(
                request,
                _("Webhook added: give its secret (below) to your receiver to check signatures"),
            )
        elif action == "update":
            hook = selectors.project_webhook(
                project=project, webhook_id=request.POST.get("webhook")
            )
            form = WebhookForm(request.POST, prefix="edit")
            if not form.is_valid():
                return _page(
                    request, access, form=WebhookForm(), editing=hook, edit_form=form, status=400
                )
            services.webhook_update(
                webhook=hook, actor=request.user, request=request, **form.cleaned_data
            )
            messages.success(request, _("Webhook saved"))
        elif action == "delete":
            hook = selectors.project_webhook(
                project=project, webhook_id=request.POST.get("webhook")
            )
            services.webhook_delete(webhook=hook, actor=request.user, request=request)
            messages.success(request, _("Webhook deleted"))
        elif action == "rotate":
            hook = selectors.project_webhook(
                project=project, webhook_id=request.POST.get("webhook")
            )
            services.webhook_rotate_secret(webhook=hook, actor=request.user, request=request)
            messages.success(request, _("New secret made: update your receiver"))
        elif action == "test":
            hook = selectors.project_webhook(
                project=project, webhook_id=request.POST.get("webhook")
            )
            services.webhook_send_test(webhook=hook, actor=request.user)
            messages.success(request, _("Test event queued: see the delivery log below"))
        elif action == "redeliver":
            delivery = selectors.project_delivery(
                project=project, delivery_id=request.POST.get("delivery")
            )
            services.delivery_redeliver(delivery=delivery, actor=request.user)
            messages.success(request, _("Delivery queued again"))
        else:
            messages.error(request, _("Unknown action"))
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return back
