from django.urls import path

from apps.projects import views

app_name = "projects"
urlpatterns = [
    path("", views.project_list, name="list"),
    path("projects/<int:project_id>/", views.dashboard, name="dashboard"),
    path("projects/<int:project_id>/members/", views.members, name="members"),
    path("projects/<int:project_id>/settings/", views.project_settings, name="settings"),
    path(
        "projects/<int:project_id>/members/<int:membership_id>/",
        views.member_update,
        name="member_update",
    ),
]
