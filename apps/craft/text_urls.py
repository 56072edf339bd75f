"""Pages of text model craft: the Model craft page, the text launch forms, the reports."""

from django.urls import path

from apps.craft import text_views

urlpatterns = [
    path("projects/<int:project_id>/craft/", text_views.index, name="index"),
    path(
        "projects/<int:project_id>/craft/text/<slug:form>/",
        text_views.launch,
        name="text_launch",
    ),
    path(
        "projects/<int:project_id>/craft/reports/<int:job_id>/",
        text_views.report,
        name="text_report",
    ),
]
