from django.apps import AppConfig


class OutputsConfig(AppConfig):
    name = "apps.outputs"
    label = "outputs"
    verbose_name = "Outputs"

    def ready(self) -> None:
        from apps.jobs.registry import register_content_rule, register_page_extra
        from apps.outputs.selectors import job_page_outputs, jobs_with_visible_content

        register_page_extra(job_page_outputs)
        # The one visibility rule, applied by the spine to job events, pages and the API.
        register_content_rule(jobs_with_visible_content)
