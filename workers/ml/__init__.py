"""Pure ML code: takes a config, paths and a Reporter, returns a result; no Django, no Celery."""
