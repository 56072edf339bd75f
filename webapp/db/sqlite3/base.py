"""Django's SQLite backend, keeping idle connections for the next request (webapp/db/reuse.py)."""

import os

from django.db.backends.sqlite3 import base, creation

from webapp.db.reuse import ReuseConnections, drop_idle


class DatabaseCreation(creation.DatabaseCreation):
    def _destroy_test_db(self, test_database_name, verbosity):
        drop_idle()  # the kept connections go with the test database
        return super()._destroy_test_db(test_database_name, verbosity)


class DatabaseWrapper(ReuseConnections, base.DatabaseWrapper):
    creation_class = DatabaseCreation

    def _raw_idle(self, raw) -> bool:
        return not raw.in_transaction

    def _shareable(self) -> bool:
        return not self.is_in_memory_db()

    def _database_identity(self):
        try:
            st = os.stat(self.settings_dict["NAME"])
        except (OSError, TypeError, ValueError):
            return None
        return (st.st_dev, st.st_ino)
