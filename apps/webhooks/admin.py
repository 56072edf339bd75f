from django.contrib import admin

from apps.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "url", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("url",)
    # The secret signs deliveries; staff see it only on the project's page, as its admins do.
    exclude = ("secret",)

    def has_add_permission(self, request) -> bool:
        return False  # made on the project's page, where a secret is generated


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    readonly_fields = (
        "number",
        "started_at",
        "duration_ms",
        "status_code",
        "response_body",
        "error",
        "ok",
    )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("uuid", "project", "type", "status", "attempts", "next_attempt_at")
    list_filter = ("status", "type")
    readonly_fields = ("uuid", "payload", "created_at")
    inlines = [AttemptInline]
