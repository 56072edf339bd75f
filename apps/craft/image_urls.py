"""Pages of image model craft."""

from django.urls import URLPattern, path

from apps.craft import image_views

urlpatterns: list[URLPattern] = [
    path(
        "projects/<int:project_id>/craft/image-lora/",
        image_views.image_lora_new,
        name="image_lora",
    ),
    path(
        "projects/<int:project_id>/craft/textual-inversion/",
        image_views.image_embedding_new,
        name="image_embedding",
    ),
    path(
        "projects/<int:project_id>/craft/trained/<int:asset_id>/download/",
        image_views.image_asset_download,
        name="image_asset_download",
    ),
]
