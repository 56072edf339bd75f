import logging
import signal
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from apps.jobs import registry, services

log = logging.getLogger("atelier.scheduler")


class Command(BaseCommand):
    help = (
        "Run the dispatcher (re-sends queued jobs whose message may be lost), the lease reaper "
        "and the periodic tasks apps register (apps.jobs.registry.register_periodic)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run one round and exit")
        parser.add_argument("--interval", type=float, default=None, help="Seconds between rounds")

    def handle(self, *args, once=False, interval=None, **options):
        interval = interval or settings.ATELIER["DISPATCH_INTERVAL"]
        heartbeat = Path(settings.VAR_DIR) / "scheduler.heartbeat"
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("scheduler started (every %.1fs)", interval)
        last_run: dict[str, float] = {}
        while not stopping:
            started = time.monotonic()
            try:
                reaped = services.reap_expired_leases()
                sent = services.dispatch_pending()
                if reaped or sent:
                    log.info("re-queued %d expired job(s), dispatched %d", reaped, sent)
                heartbeat.touch()
            except Exception:
                log.exception("scheduler round failed; retrying")
            finally:
                close_old_connections()
            run_periodic(last_run)
            if once:
                break
            # Rounds start every `interval` (not interval + the round's own time + a sleep step
            # past the deadline): periodic tasks keep their period.
            deadline = started + interval
            while not stopping and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(0.2, left))
        log.info("scheduler stopped")


def run_periodic(last_run: dict[str, float]) -> None:
    """Call the registered periodic tasks that are due; one failing does not stop the others."""
    for task in registry.periodic_tasks():
        now = time.monotonic()
        if task.name in last_run and now - last_run[task.name] < task.every_seconds:
            continue
        last_run[task.name] = now
        try:
            task.fn()
        except Exception:
            log.exception("periodic task %s failed; retrying next round", task.name)
        finally:
            close_old_connections()
