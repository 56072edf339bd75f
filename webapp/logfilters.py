"""Logging filters of the platform (webapp/settings.py LOGGING)."""

from __future__ import annotations

import logging


class ForbiddenOnOneLine(logging.Filter):
    """A 403 (a role that may not do something) is an expected answer, not an error: log its
    one line (method, path) without the traceback Django attaches to it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
