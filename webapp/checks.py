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


@register(Tags.security)
def development_key_stays_on_loopback(app_configs, **kwargs):
    """Not only a deploy check: a server named beyond loopback with the public key is exposed
    whether or not anyone ran `check --deploy` (runplatform refuses a non-loopback --host too)."""
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY and settings.SERVES_BEYOND_LOOPBACK:
        return [
            Error(
                "The development SECRET_KEY is in use while DJANGO_ALLOWED_HOSTS names hosts "
                "beyond loopback: anyone could forge sessions",
                hint="Set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE), or serve on loopback only.",
                id="atelier.E002",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def pseudonym_key_is_set(app_configs, **kwargs):
    if not settings.ATELIER_PSEUDONYM_KEY:
        return [
            Error(
                "ATELIER_PSEUDONYM_KEY is not set: PII pseudonym redaction cannot run",
                hint="Set ATELIER_PSEUDONYM_KEY (or ATELIER_PSEUDONYM_KEY_FILE) to a long random "
                "secret of its own, kept as long as the datasets it pseudonymised.",
                id="atelier.E003",
            )
        ]
    if settings.ATELIER_PSEUDONYM_KEY == settings.SECRET_KEY:
        return [
            Error(
                "ATELIER_PSEUDONYM_KEY equals SECRET_KEY",
                hint="Give pseudonyms a key of their own.",
                id="atelier.E004",
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


@register(Tags.security, deploy=True)
def content_credentials_use_a_real_certificate(app_configs, **kwargs):
    if not (settings.ATELIER_C2PA_CERT_FILE or settings.ATELIER_C2PA_KEY_FILE):
        return [
            Warning(
                "Content Credentials are signed by the development CA: no reader trusts them",
                hint="Set ATELIER_C2PA_CERT_FILE (PEM certificate chain, leaf first) and "
                "ATELIER_C2PA_KEY_FILE (its PEM private key) where the CPU worker runs.",
                id="atelier.W003",
            )
        ]
    return []


@register()
def content_credentials_signer_is_whole(app_configs, **kwargs):
    if bool(settings.ATELIER_C2PA_CERT_FILE) != bool(settings.ATELIER_C2PA_KEY_FILE):
        return [
            Error(
                "Only one of ATELIER_C2PA_CERT_FILE and ATELIER_C2PA_KEY_FILE is set: images "
                "cannot be given Content Credentials",
                hint="Set both (a certificate chain and its key), or neither for the development CA.",
                id="atelier.E005",
            )
        ]
    return []
