import logging
import signal
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from apps.jobs import services

log = logging.getLogger("atelier.scheduler")


class Command(BaseCommand):
    help = (
        "Run the dispatcher (re-sends queued jobs whose message may be lost) and the lease reaper."
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
        while not stopping:
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
            if once:
                break
            deadline = time.monotonic() + interval
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, interval))
        log.info("scheduler stopped")
