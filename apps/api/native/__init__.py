"""The native REST API under /api/v1/ (django-ninja: OpenAPI schema at /api/v1/schema, browsable
docs at /api/v1/docs). Authenticated by a personal token (Bearer) or the browser's session; every
endpoint goes through the same selectors and services as the pages, so a stranger gets 404 and a
role without the capability 403, as there."""

from __future__ import annotations

from apps.api import errors
from apps.api.auth import TOKEN_OR_SESSION
from apps.api.native import (
    adapters,
    base_models,
    datasets,
    galleries,
    jobs,
    members,
    outputs,
    projects,
    provenance,
    review,
)

api = errors.SchemaCachedAPI(
    title="Atelier API",
    version="1",
    description=(
        "Datasets, fine-tunes, generation, review and provenance of an Atelier instance. "
        "Authenticate with `Authorization: Bearer <token>` (make a token on your API tokens "
        "page, or `manage.py apitoken create <username>`). Errors are "
        '`{"error": {"code", "message", "param", "type"}}`.'
    ),
    urls_namespace="api",
    auth=TOKEN_OR_SESSION,
    openapi_url="/schema",
    docs_url="/docs",
)
errors.install(api)
for module in (
    projects,
    members,
    jobs,
    datasets,
    base_models,
    adapters,
    outputs,
    galleries,
    review,
    provenance,
):
    api.add_router("", module.router)
