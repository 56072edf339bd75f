from django.apps import AppConfig


class ImagesConfig(AppConfig):
    name = "apps.images"
    label = "images"
    verbose_name = "Image generation"
