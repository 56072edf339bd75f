"""Django's PostgreSQL backend, keeping idle connections for the next request
(webapp/db/reuse.py)."""

from django.db.backends.postgresql import base, creation

from webapp.db.reuse import ReuseConnections, drop_idle


class DatabaseCreation(creation.DatabaseCreation):
    def _destroy_test_db(self, test_database_name, verbosity):
        drop_idle()  # or DROP DATABASE finds them connected ("accessed by other users")
        return super()._destroy_test_db(test_database_name, verbosity)


class DatabaseWrapper(ReuseConnections, base.DatabaseWrapper):
    creation_class = DatabaseCreation

    def _raw_idle(self, raw) -> bool:
        from psycopg.pq import TransactionStatus

        return not raw.closed and raw.info.transaction_status == TransactionStatus.IDLE

    def _raw_alive(self, raw) -> bool:
        try:
            with raw.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - a server restart left it dead: open a new one
            return False
        return True

    def _shareable(self) -> bool:
        return not self.pool  # Django's own pool (OPTIONS["pool"]) keeps connections itself
