from django.urls import path

from apps.datasets import views

app_name = "datasets"
P = "projects/<int:project_id>/datasets/"
V = P + "<int:dataset_id>/v<int:number>/"
urlpatterns = [
    path(P, views.dataset_list, name="list"),
    path(P + "upload/", views.upload, name="upload"),
    path(P + "upload/<str:token>/", views.map_columns, name="map"),
    path(P + "upload/<str:token>/preview/", views.map_preview, name="map_preview"),
    path(P + "imports/<int:job_id>/", views.import_status, name="import"),
    path(P + "imports/<int:job_id>/cancel/", views.import_cancel, name="import_cancel"),
    path(P + "<int:dataset_id>/", views.dataset_detail, name="detail"),
    path(V, views.version_detail, name="version"),
    path(V + "download.<str:fmt>", views.version_download, name="download"),
    path(V + "actions/", views.version_action, name="action"),
    path(V + "decision/", views.version_decide, name="decide"),
]
