"""Typed, user-facing dataset errors: each names its place (row, line, column or archive member)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["DatasetError", "DatasetInvalid", "ErrorLog", "MappingError", "TemplateError"]


class DatasetError(Exception):
    """One problem in a dataset file, shown to the user as written.

    `row` is the 1-based data record (CSV rows after the header, JSON array elements), `line` the
    1-based physical line (JSONL, JSON parse errors), `path` an archive member or inner file.
    `str()` gives e.g. `row 17: column "answer" is empty` or `images/cat.png: not an image`.
    `code` is a stable machine-readable kind (`empty`, `invalid_json`, `too_many_columns`, ...).
    """

    def __init__(
        self,
        reason: str,
        *,
        row: int | None = None,
        column: str | None = None,
        line: int | None = None,
        path: str | None = None,
        code: str = "invalid",
    ) -> None:
        self.reason = reason
        self.row = row
        self.column = column
        self.line = line
        self.path = path
        self.code = code
        super().__init__(self.message)

    @property
    def location(self) -> str:
        parts = []
        if self.path:
            parts.append(self.path)
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.line is not None:
            parts.append(f"line {self.line}")
        return ", ".join(parts)

    @property
    def message(self) -> str:
        text = self.reason
        if self.column is not None:
            sep = "" if text.startswith((",", ":")) else " "
            text = f'column "{self.column}"{sep}{text}'
        where = self.location
        return f"{where}: {text}" if where else text

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"DatasetError({self.message!r}, code={self.code!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields survive pickling (Celery may carry a raised error between processes).
        state = {k: getattr(self, k) for k in ("row", "column", "line", "path", "code")}
        return (self.__class__, (self.reason,), state)

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        self.__dict__.update(state or {})
        self.args = (self.message,)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for storing with a failed import."""
        return {
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
            "row": self.row,
            "line": self.line,
            "column": self.column,
            "path": self.path,
        }


class MappingError(DatasetError):
    """The chosen column mapping does not fit the schema or the file."""


class TemplateError(DatasetError):
    """A prompt template has unknown placeholders or unbalanced braces."""


class DatasetInvalid(Exception):
    """The file was refused: `errors` holds the first problems found, `total` counts them all."""

    def __init__(self, errors: Iterable[DatasetError], total: int | None = None) -> None:
        self.errors = list(errors)
        self.total = len(self.errors) if total is None else total
        super().__init__(str(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.errors, self.total))

    @property
    def messages(self) -> list[str]:
        return [e.message for e in self.errors]

    def __str__(self) -> str:
        if not self.errors:
            return "the dataset is invalid"
        first = self.errors[0].message
        if self.total == 1:
            return first
        return f"{self.total:,} problems; the first: {first}"

    def to_list(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.errors]


class ErrorLog:
    """Keeps the first `keep` errors and counts all of them."""

    def __init__(self, keep: int = 100) -> None:
        self.keep = keep
        self.errors: list[DatasetError] = []
        self.total = 0

    def add(self, error: DatasetError) -> None:
        self.total += 1
        if len(self.errors) < self.keep:
            self.errors.append(error)

    def __bool__(self) -> bool:
        return self.total > 0

    def invalid(self) -> DatasetInvalid:
        return DatasetInvalid(self.errors, self.total)
