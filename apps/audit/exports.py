"""The audit log as CSV (safe to open in a spreadsheet) and JSONL, streamed and capped."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from apps.audit.models import AuditEvent
from apps.audit.selectors import event_row

# The most rows one export writes (a narrower filter gets the rest): it bounds the response's
# memory under ASGI, which collects a synchronous stream before sending it.
EXPORT_MAX_ROWS = 100_000
CHUNK = 2000

CSV_COLUMNS = (
    "created_at",
    "actor",
    "action",
    "target_type",
    "target_id",
    "project_id",
    "project",
    "reason",
    "ruleset_version",
)

# CSV injection (the usage export uses it too; workers/data/canonical.py keeps the same rule for
# the pure side): a cell that starts like a formula gets a leading apostrophe, shown as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> str:
    """Spreadsheet-safe text: a cell starting like a formula is escaped."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _rows(events: QuerySet[AuditEvent], with_ip: bool) -> Iterator[dict[str, Any]]:
    for event in events[:EXPORT_MAX_ROWS].iterator(chunk_size=CHUNK):
        yield event_row(event, with_ip=with_ip)


def csv_lines(rows: Iterable[dict[str, Any]], *, with_ip: bool = False) -> Iterator[str]:
    """Header, then one CSV line per row; `data` as JSON in the last column."""
    columns = [*CSV_COLUMNS, *(("ip_address",) if with_ip else ()), "data"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([spreadsheet_cell(c) for c in cells])
        return buffer.getvalue()

    yield line(columns)
    for row in rows:
        data = json.dumps(row["data"], ensure_ascii=False, sort_keys=True, default=str)
        yield line([*(row.get(c) for c in columns[:-1]), data])


def jsonl_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One JSON object per line: the row's columns and its whole `data`."""
    for row in rows:
        record = {k: v for k, v in row.items() if k != "details"}
        yield json.dumps(record, ensure_ascii=False, sort_keys=True, default=str) + "\n"


def export_response(
    events: QuerySet[AuditEvent], *, fmt: str, name: str, with_ip: bool = False
) -> StreamingHttpResponse:
    """The filtered events as a streamed download (`fmt`: "csv" or "jsonl")."""
    rows = _rows(events, with_ip)
    if fmt == "csv":
        lines, content_type = csv_lines(rows, with_ip=with_ip), "text/csv; charset=utf-8"
    else:
        lines, content_type = jsonl_lines(rows), "application/jsonl; charset=utf-8"
    response = StreamingHttpResponse(
        (line.encode("utf-8") for line in lines), content_type=content_type
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = content_disposition_header(True, f"{name}-{stamp}.{fmt}")
    if events[EXPORT_MAX_ROWS : EXPORT_MAX_ROWS + 1].exists():
        # More matched than one export holds: the client is told, the file stays well-formed.
        response["X-Export-Truncated"] = f"first {EXPORT_MAX_ROWS} rows"
    return response
