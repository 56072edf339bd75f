"""System checks: bad configuration is reported at start, not discovered in production."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def secret_key_is_not_the_development_key(app_configs, **kwargs):
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        return [
            Error(
                "DJANGO_SECRET_KEY is the development key",
                hint="Set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE).",
                id="atelier.E001",
            )
        ]
    return []


@register()
def offline_by_default(app_configs, **kwargs):
    import os

    if os.environ.get("HF_HUB_OFFLINE") != "1":
        return [
            Warning("HF_HUB_OFFLINE is not 1: model code may try to reach a hub", id="atelier.W001")
        ]
    return []


@register(Tags.security, deploy=True)
def production_uses_real_services(app_configs, **kwargs):
    errors = []
    if not settings.DEBUG and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        errors.append(
            Warning(
                "SQLite in production: set DATABASE_URL to a PostgreSQL database", id="atelier.W002"
            )
        )
    return errors
