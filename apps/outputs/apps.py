from django.apps import AppConfig


class OutputsConfig(AppConfig):
    name = "apps.outputs"
    label = "outputs"
    verbose_name = "Outputs"

    def ready(self) -> None:
        from apps.jobs.registry import register_page_extra
        from apps.outputs.selectors import job_page_outputs

        register_page_extra(job_page_outputs)
