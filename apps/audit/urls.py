from django.urls import path

from apps.audit import views

app_name = "audit"
urlpatterns = [
    path("projects/<int:project_id>/audit/", views.project_audit, name="project"),
    path("audit/", views.platform_audit, name="platform"),
]
