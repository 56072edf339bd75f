from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from apps.core.supervisor import read_status


@never_cache
def healthz(request):
    """Liveness for load balancers and compose: the process answers and the database is reachable.

    Under `make run` it also lists the supervised processes (state, restarts, last exit): a child
    that is being restarted makes the status "degraded", one that was given up "failing".
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        db = "ok"
    except Exception as exc:  # report, don't raise: this is a probe
        return JsonResponse({"status": "error", "database": str(exc)[:200]}, status=503)
    body = {"status": "ok", "database": db}
    supervised = read_status(Path(settings.VAR_DIR) / "supervisor.json")
    if supervised is not None:
        children = supervised.get("children", {})
        states = {c.get("state") for c in children.values()}
        if "gave-up" in states:
            body["status"] = "failing"
        elif "restarting" in states:
            body["status"] = "degraded"
        if not getattr(request.user, "is_staff", False):  # pids only for platform staff
            children = {n: {k: v for k, v in c.items() if k != "pid"} for n, c in children.items()}
        body["processes"] = children
    return JsonResponse(body)
