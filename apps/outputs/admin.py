from django.contrib import admin

from apps.outputs.models import Output


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "project",
        "kind",
        "base_model",
        "adapter",
        "moderation",
        "created_by",
        "created_at",
    )
    list_filter = ("kind", "moderation", "project", "base_model")
    search_fields = ("prompt", "text", "sha256")
    readonly_fields = [f.name for f in Output._meta.fields if f.name != "moderation"]

    def has_add_permission(self, request):
        return False
