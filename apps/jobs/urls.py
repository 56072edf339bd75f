from django.urls import path

from apps.jobs import compare, views

app_name = "jobs"
urlpatterns = [
    path("projects/<int:project_id>/jobs/new/", views.launch, name="launch"),
    path("projects/<int:project_id>/jobs/<int:job_id>/", views.detail, name="detail"),
    path("projects/<int:project_id>/jobs/<int:job_id>/cancel/", views.cancel, name="cancel"),
    path("projects/<int:project_id>/jobs/<int:job_id>/retry/", views.retry, name="retry"),
    path("projects/<int:project_id>/finetune/compare/", compare.compare_runs, name="compare"),
]
