from django.contrib import admin, messages

from apps.jobs import services
from apps.jobs.models import Job, JobEvent
from apps.jobs.states import IllegalTransition


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "project",
        "kind",
        "queue",
        "state",
        "progress_pct",
        "attempt",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("state", "queue", "kind", "project")
    search_fields = ("id", "kind", "project__name", "created_by__username", "error")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Job._meta.fields]
    actions = ["cancel_jobs", "retry_jobs"]

    @admin.display(description="progress")
    def progress_pct(self, obj):
        return f"{obj.progress * 100:.0f}%"

    def has_add_permission(self, request):
        return False  # jobs are launched from a project, with validated params

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        n = sum(
            services.job_cancel(job=job, actor=request.user, request=request) for job in queryset
        )
        self.message_user(request, f"Cancelled or cancelling {n} job(s)", messages.SUCCESS)

    @admin.action(description="Retry selected failed/cancelled jobs")
    def retry_jobs(self, request, queryset):
        done, skipped = 0, 0
        for job in queryset:
            try:
                services.job_retry(job=job, actor=request.user, request=request)
                done += 1
            except (IllegalTransition, services.JobParamsError):
                skipped += 1
        self.message_user(request, f"Retried {done} job(s), skipped {skipped}", messages.SUCCESS)


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ("job", "seq", "kind", "attempt", "created_at")
    list_filter = ("kind",)
    search_fields = ("job__id",)
    readonly_fields = [f.name for f in JobEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
