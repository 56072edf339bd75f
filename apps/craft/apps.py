from django.apps import AppConfig


class CraftConfig(AppConfig):
    name = "apps.craft"
    label = "craft"
    verbose_name = "Model craft"
