from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "apps.moderation"
    label = "moderation"
    verbose_name = "Moderation"

    def ready(self) -> None:
        from apps.jobs.registry import register_submit_check
        from apps.moderation.services import prompt_submit_check

        register_submit_check(prompt_submit_check)
