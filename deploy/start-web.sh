#!/bin/sh
# The web process: collect static files into this container, then hand over to uvicorn with exec
# so that it is PID 1 and receives SIGTERM itself. Migrations run once, in the `migrate` service.
set -eu
python manage.py collectstatic --noinput
exec uvicorn webapp.asgi:application --host 0.0.0.0 --port 8000 --proxy-headers \
  --ws-per-message-deflate false "$@"
