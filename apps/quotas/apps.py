from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "apps.quotas"
    label = "quotas"
    verbose_name = "Budgets and quotas"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.quotas.models import PlatformPolicy
        from apps.quotas.services import forget_policy

        post_save.connect(forget_policy, sender=PlatformPolicy, dispatch_uid="quotas-policy")
