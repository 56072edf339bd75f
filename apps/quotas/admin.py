from django.contrib import admin

from apps.quotas.models import PlatformPolicy, ProjectQuota


@admin.register(PlatformPolicy)
class PlatformPolicyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return not PlatformPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ProjectQuota)
class ProjectQuotaAdmin(admin.ModelAdmin):
    list_display = ("project", "monthly_gpu_hours")
    autocomplete_fields = ("project",)
