from django.urls import path

from apps.api import views

app_name = "api"
urlpatterns = [
    path("projects/", views.projects, name="projects"),
    path("projects/<int:project_id>/jobs/", views.jobs, name="jobs"),
    path("projects/<int:project_id>/jobs/<int:job_id>/", views.job_detail, name="job"),
    path(
        "projects/<int:project_id>/jobs/<int:job_id>/events/",
        views.job_events_view,
        name="job_events",
    ),
    path(
        "projects/<int:project_id>/jobs/<int:job_id>/metrics/",
        views.job_metrics_view,
        name="job_metrics",
    ),
    path(
        "projects/<int:project_id>/jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"
    ),
    path("projects/<int:project_id>/jobs/<int:job_id>/retry/", views.job_retry, name="job_retry"),
    path("projects/<int:project_id>/datasets/", views.datasets, name="datasets"),
    path(
        "projects/<int:project_id>/datasets/<int:dataset_id>/versions/<int:number>/",
        views.dataset_version,
        name="dataset_version",
    ),
    # Public (no authentication): chain facts and the proof of a hash, never its project.
    path("verify/<str:sha256>/", views.verify, name="verify"),
]
