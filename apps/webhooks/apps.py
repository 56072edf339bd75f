from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from apps.jobs.registry import register_periodic
        from apps.webhooks.services import SWEEP_EVERY_SECONDS, deliveries_sweep

        # The scheduler re-sends due deliveries (retries after their back-off, and messages a
        # killed worker or a flushed Redis lost); the spine does not import this app's services.
        register_periodic("webhooks.sweep", deliveries_sweep, every_seconds=SWEEP_EVERY_SECONDS)
