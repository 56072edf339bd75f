from django.apps import AppConfig


class GalleriesConfig(AppConfig):
    name = "apps.galleries"
    label = "galleries"
    verbose_name = "Galleries"
