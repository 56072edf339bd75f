"""OpenAI-compatible endpoints under /v1/: the official `openai` client works with
`base_url=<atelier>/v1` and an Atelier API token. The project is the token's default project.

Each resource is a router of its own module; errors keep OpenAI's shape
({"error": {"message", "type", "param", "code"}}), which the client turns into its exceptions.
"""

from __future__ import annotations

from apps.api import errors
from apps.api.auth import token_auth

api = errors.SchemaCachedAPI(
    title="Atelier OpenAI-compatible API",
    version="v1",
    description="OpenAI's files, fine_tuning, models, chat/completions, completions, "
    "images and moderations shapes, served by this Atelier instance.",
    urls_namespace="openai",
    auth=[token_auth],
    openapi_url="/openapi.json",
    docs_url="/docs",
)
errors.install(api)


# After `api` exists: the resource modules import this package's helpers.
from apps.api.openai_compat import (  # noqa: E402
    chat,
    files,
    fine_tuning,
    images,
    models,
    moderations,
)

for module in (files, fine_tuning, models, chat, images, moderations):
    api.add_router("", module.router)
