from django.contrib import admin

from apps.datasets.models import Dataset, DatasetVersion


class VersionInline(admin.TabularInline):
    model = DatasetVersion
    fields = ("number", "operation", "rows", "sha256", "approval", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "schema", "license", "source", "created_by", "created_at")
    list_filter = ("schema", "license", "project")
    search_fields = ("name", "description", "source")
    inlines = [VersionInline]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "operation",
        "rows",
        "short_sha",
        "approval",
        "decided_by",
        "created_at",
    )
    list_filter = ("approval", "operation", "dataset__project")
    search_fields = ("dataset__name", "sha256")
    # Versions are immutable: content and identity can't be edited; approval goes through the app.
    readonly_fields = [
        f.name for f in DatasetVersion._meta.fields if f.name not in ("approval_comment",)
    ]

    def has_add_permission(self, request):
        return False
