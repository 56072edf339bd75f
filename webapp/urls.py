from django.contrib import admin
from django.urls import include, path

from apps.core import views as core_views

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("apps.accounts.urls")),
    path("api/v1/", include("apps.api.urls")),
    path("v1/", include("apps.api.openai_urls")),
    path("settings/tokens/", include("apps.api.pages_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("usage/", include("apps.quotas.urls")),
    path("", include("apps.projects.urls")),
    path("", include("apps.jobs.urls")),
    path("", include("apps.audit.urls")),
    path("", include("apps.datasets.urls")),
    path("", include("apps.models.urls")),
    path("", include("apps.finetunes.urls")),
    path("", include("apps.craft.urls")),
    path("", include("apps.playground.urls")),
    path("", include("apps.galleries.urls")),
    path("", include("apps.images.urls")),
    path("", include("apps.review.urls")),
    path("", include("apps.provenance.urls")),
    path("", include("apps.webhooks.urls")),
]
