"""Celery glue: claim the job row, build a Reporter, call pure code, record the result."""
