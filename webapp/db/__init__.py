"""Database backends: Django's SQLite and PostgreSQL backends, with idle connections kept for the
next request (reuse.py)."""
