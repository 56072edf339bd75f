from django.urls import path

from apps.galleries import views

app_name = "galleries"
P = "projects/<int:project_id>/gallery/"
urlpatterns = [
    path(P, views.gallery, name="index"),
    path(P + "boards/", views.collection_create, name="collection_create"),
    path(P + "png-info/", views.png_info, name="png_info"),
    path(P + "upload/", views.output_upload, name="upload"),
    path(P + "score/", views.outputs_score, name="score"),
    path(P + "<int:output_id>/", views.output_detail, name="output"),
    path(P + "<int:output_id>/<str:which>.png", views.output_file, name="file"),
    path(P + "<int:output_id>/delete/", views.output_delete, name="delete"),
    path(P + "<int:output_id>/upscale/", views.output_upscale, name="upscale"),
    path(P + "<int:output_id>/boards/", views.collection_toggle, name="collection_toggle"),
    # A signed, expiring link (the API's response_format "url"): no project in the path, the
    # token names the output and is checked against the user it was made for.
    path("links/<str:token>/<str:name>", views.signed_file, name="signed_file"),
]
