"""webapp/db: a connection closed cleanly waits for the process's next request instead of being
closed (under ASGI each request used to open one: ~1 ms on SQLite, ~4 ms on PostgreSQL), and
one that may carry state (an open transaction, an error, another database file, a dead server)
is never handed on."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from apps.projects.models import Project
from webapp.db.reuse import drop_idle, idle_count

pytestmark = pytest.mark.django_db(transaction=True)


def _fresh() -> object:
    connection.close()
    drop_idle()
    connection.ensure_connection()
    return connection.connection


def test_a_connection_closed_after_a_request_is_taken_by_the_next_one():
    raw = _fresh()
    Project.objects.count()
    connection.close()
    assert idle_count(connection) == 1
    connection.ensure_connection()
    assert connection.connection is raw
    assert idle_count(connection) == 0
    assert Project.objects.count() >= 0  # and it works


def test_a_connection_closed_inside_a_transaction_is_not_handed_on():
    raw = _fresh()
    with transaction.atomic():
        Project.objects.create(name="inside")
        connection.close()
    assert idle_count(connection) == 0
    connection.close()
    connection.ensure_connection()
    assert connection.connection is not raw
    assert not Project.objects.filter(name="inside").exists()  # nothing half-done came along


def test_a_connection_that_saw_a_database_error_is_closed_not_kept():
    _fresh()
    with pytest.raises(DatabaseError):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_here")
    connection.close()
    assert idle_count(connection) == 0


def test_a_replaced_sqlite_file_is_opened_anew(tmp_path):
    """A restore from backup replaces the database file: a kept connection would still read the
    old one (its inode)."""
    from webapp.db.sqlite3.base import DatabaseWrapper

    path = tmp_path / "db.sqlite3"
    settings = {**connection.settings_dict, "NAME": str(path), "OPTIONS": {}, "TEST": {}}
    settings["ENGINE"] = "webapp.db.sqlite3"
    db = DatabaseWrapper(settings, alias="reuse-test")
    try:
        with db.cursor() as cursor:
            cursor.execute("CREATE TABLE old_only (x INTEGER)")
        db.close()
        assert idle_count(db) == 1
        restored = tmp_path / "restored.sqlite3"
        sqlite3.connect(restored).execute("CREATE TABLE new_only (x INTEGER)").connection.commit()
        restored.replace(path)
        with db.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            assert [r[0] for r in cursor.fetchall()] == ["new_only"]
    finally:
        db.close()
        drop_idle()


def test_a_kept_postgresql_connection_whose_server_side_ended_is_replaced():
    """A database restart leaves kept connections dead (here the server ends that one session
    while it waits in the list): the next request gets a live one instead of an error."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    import psycopg

    raw = _fresh()
    pid = raw.info.backend_pid
    connection.close()
    assert idle_count(connection) == 1
    params = {
        k: v
        for k, v in connection.get_connection_params().items()
        if k in ("dbname", "user", "host", "port", "password")
    }
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    connection.ensure_connection()
    assert connection.connection.info.backend_pid != pid
    assert Project.objects.count() >= 0
