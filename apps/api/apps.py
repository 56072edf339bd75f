from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "apps.api"
    label = "api"
    verbose_name = "API"

    def ready(self) -> None:
        import webapp.limits
        from apps.api.tokens import token_lookup

        # A Bearer token counts like an uploader's session for the upload routes' body limits.
        webapp.limits.bearer_lookup = token_lookup
