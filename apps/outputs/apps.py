from django.apps import AppConfig


class OutputsConfig(AppConfig):
    name = "apps.outputs"
    label = "outputs"
    verbose_name = "Outputs"
