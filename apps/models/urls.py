from django.urls import path

from apps.models import views

app_name = "models"
urlpatterns = [
    path("projects/<int:project_id>/models/", views.model_list, name="list"),
    path(
        "projects/<int:project_id>/models/adapters/<int:adapter_id>/",
        views.adapter_detail,
        name="adapter",
    ),
    path(
        "projects/<int:project_id>/adapters/<int:adapter_id>/download/<str:what>.zip",
        views.adapter_download,
        name="adapter_download",
    ),
    path(
        "projects/<int:project_id>/adapters/<int:adapter_id>/merge/",
        views.adapter_merge,
        name="adapter_merge",
    ),
]
