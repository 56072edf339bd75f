"""The Celery app. Tasks live in workers/tasks; messages only carry job ids (DESIGN.md)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("atelier", include=["workers.tasks.jobs", "workers.tasks.webhooks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
