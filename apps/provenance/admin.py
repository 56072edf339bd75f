from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from apps.provenance.models import (
    AnchorBatch,
    ChainDeployment,
    ProvenanceRecord,
    ProvenanceSettings,
    SignerNonce,
)
from apps.provenance.transitions import batch_retry


class ReadOnly(admin.ModelAdmin):
    """Rows the platform writes (from the chain's answers): shown, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ChainDeployment)
class ChainDeploymentAdmin(ReadOnly):
    list_display = ("chain_id", "address", "tx_hash", "deployed_at")


@admin.register(ProvenanceSettings)
class ProvenanceSettingsAdmin(admin.ModelAdmin):
    list_display = ("project", "mode", "updated_at")
    list_filter = ("mode",)


@admin.register(AnchorBatch)
class AnchorBatchAdmin(ReadOnly):
    list_display = (
        "id",
        "project",
        "chain_id",
        "state",
        "count",
        "nonce",
        "tx_hash",
        "block_number",
        "confirmations",
        "replacements",
        "created_at",
    )
    list_filter = ("state", "chain_id")
    search_fields = ("root", "tx_hash")
    actions = ["retry"]

    @admin.action(description="Send failed batches again (new nonce)")
    def retry(self, request, queryset):
        for batch in queryset:
            try:
                batch_retry(batch=batch, actor=request.user, request=request)
            except (PermissionDenied, ValidationError) as exc:
                self.message_user(request, f"batch {batch.pk}: {exc}", messages.WARNING)


@admin.register(ProvenanceRecord)
class ProvenanceRecordAdmin(ReadOnly):
    list_display = ("output", "project", "state", "batch", "leaf_index", "shared_leaf")
    list_filter = ("state", "shared_leaf")
    search_fields = ("sha256", "leaf")
    raw_id_fields = ("output", "batch")


@admin.register(SignerNonce)
class SignerNonceAdmin(ReadOnly):
    list_display = ("chain_id", "address", "next_nonce", "updated_at")
