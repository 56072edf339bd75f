"""The one entry point for turning an uploaded file into a canonical dataset version."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workers.data.canonical import (
    CANONICAL_NAME,
    DEFAULT_TEMPLATES,
    IMAGES_DIR,
    SCHEMAS,
    Canonicalizer,
    CanonicalWriter,
    Mapping,
    RoleError,
    check_fraction,
    check_template,
    dump_record,
    read_rows,
    render_template,
    split_of,
)
from workers.data.errors import DatasetError, DatasetInvalid, ErrorLog, MappingError
from workers.data.formats import Rec, Sniffed, open_source, sniff
from workers.data.images import ZipSource
from workers.data.limits import DEFAULT_LIMITS, ImportLimits, find_problem

__all__ = ["ImportResult", "Preview", "Sample", "import_file", "preview", "render_rows"]

Progress = Callable[[int, int], None]
PROGRESS_EVERY = 4096  # records between progress calls


@dataclass(frozen=True)
class ImportResult:
    """A successful import: the canonical file, its identity (sha256) and what was read."""

    sha256: str
    rows: int
    canonical_path: str
    images_dir: str | None
    format: str
    encoding: str | None
    schema: str
    columns: list[str]
    mapping: Mapping
    split_counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    bytes: int = 0


@dataclass(frozen=True)
class Sample:
    location: str
    record: dict[str, Any]
    text: str


@dataclass(frozen=True)
class Preview:
    samples: list[Sample]
    errors: list[DatasetError]
    mapping: Mapping
    template: str
    sniffed: Sniffed


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names) or "none"


def _choose_mapping(sniffed: Sniffed, mapping: Mapping | None) -> Mapping:
    """The mapping to use, checked against the columns the file has."""
    if mapping is None:
        mapping = sniffed.suggested_mapping
        if mapping is None:
            raise MappingError(
                "cannot tell which columns hold what: choose a mapping "
                f"(columns found: {_quoted(sniffed.columns)})",
                code="no_mapping",
            )
    if sniffed.container == "zip" and mapping.schema != "image_caption":
        raise MappingError("an image zip imports as the image_caption schema", code="bad_mapping")
    if sniffed.container != "zip" and mapping.schema == "image_caption":
        raise MappingError("image_caption datasets come from a zip of images", code="bad_mapping")
    found = set(sniffed.columns)
    missing = [c for c in mapping.columns.values() if c not in found]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        raise DatasetError(
            f"missing {noun} {_quoted(missing)} (found: {_quoted(sniffed.columns)})",
            code="missing_columns",
        )
    return mapping


def _no_rows(sniffed: Sniffed) -> DatasetError:
    if sniffed.container in ("csv", "tsv"):
        return DatasetError("the file has a header but no data rows", code="no_rows")
    return DatasetError("the file has no records", code="no_rows")


def _mapping_or_sample_errors(sniffed: Sniffed, mapping: Mapping | None) -> Mapping:
    """The mapping; when none fits and the sampled records were bad, those errors explain why."""
    if not sniffed.sample_rows and not sniffed.sample_errors:
        raise _no_rows(sniffed)
    try:
        return _choose_mapping(sniffed, mapping)
    except DatasetError as exc:
        if sniffed.sample_errors and not sniffed.sample_rows and mapping is None:
            # No record could be read, so no columns: "cannot tell which columns hold what"
            # would only repeat that; the records' own errors say why.
            raise DatasetInvalid(sniffed.sample_errors) from None
        if sniffed.sample_errors:
            raise DatasetInvalid([*sniffed.sample_errors, exc]) from None
        raise


def _locate(error: RoleError | DatasetError, item: Rec) -> DatasetError:
    if isinstance(error, DatasetError):
        if error.path is None and error.row is None and error.line is None:
            return DatasetError(
                error.reason,
                column=error.column,
                row=item.row,
                line=item.line,
                path=item.path,
                code=error.code,
            )
        return error
    column, reason, code = error
    return DatasetError(
        reason, column=column, row=item.row, line=item.line, path=item.path, code=code
    )


def _canonicalizer(source: Any, mapping: Mapping, limits: ImportLimits) -> Canonicalizer:
    resolve = source.resolve_image if isinstance(source, ZipSource) else None
    return Canonicalizer(mapping, max_cell_chars=limits.max_cell_chars, resolve_image=resolve)


def import_file(
    path: str | os.PathLike[str],
    filename: str,
    *,
    out_dir: str | os.PathLike[str],
    mapping: Mapping | None = None,
    fmt: str | None = None,
    encoding: str | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
    validation_fraction: float = 0.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> ImportResult:
    """Validate a dataset file and write its canonical JSONL (+ images/) into `out_dir`.

    Raises DatasetInvalid with every problem found (the first `limits.max_errors`, and a count);
    on any failure `out_dir` is left as it was. `progress(bytes_read, total_bytes)` is called now
    and then; an exception raised from it (a cancel) aborts the import the same clean way.
    """
    fraction = check_fraction(validation_fraction)
    path = os.fspath(path)
    out_dir = os.fspath(out_dir)
    final_jsonl = os.path.join(out_dir, CANONICAL_NAME)
    final_images = os.path.join(out_dir, IMAGES_DIR)
    for existing in (final_jsonl, final_images):
        if os.path.exists(existing):
            raise FileExistsError(f"{existing} already exists; import into an empty folder")
    os.makedirs(out_dir, exist_ok=True)

    log = ErrorLog(limits.max_errors)
    try:
        # Not strict: problems of the sampled records are reported with the rest, in file order.
        sniffed = sniff(path, filename, fmt=fmt, encoding=encoding, limits=limits, strict=False)
        mapping = _mapping_or_sample_errors(sniffed, mapping)
        source = open_source(path, filename, fmt=fmt, encoding=encoding, limits=limits)
    except DatasetError as exc:
        log.add(exc)
        raise log.invalid() from None

    tmp = tempfile.mkdtemp(prefix=".import-", dir=out_dir)
    try:
        try:
            result = _run(source, sniffed, mapping, tmp, log, limits, fraction, seed, progress)
        except DatasetError as exc:  # a problem that stops the file
            log.add(exc)
            raise log.invalid() from None
        finally:
            source.close()
        os.replace(result.canonical_path, final_jsonl)
        images = None
        if result.images_dir is not None:
            os.replace(result.images_dir, final_images)
            images = final_images
        return dataclasses.replace(result, canonical_path=final_jsonl, images_dir=images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(
    source: Any,
    sniffed: Sniffed,
    mapping: Mapping,
    tmp: str,
    log: ErrorLog,
    limits: ImportLimits,
    fraction: float,
    seed: int,
    progress: Progress | None,
) -> ImportResult:
    images_dir = None
    if isinstance(source, ZipSource):
        images_dir = os.path.join(tmp, IMAGES_DIR)
        os.mkdir(images_dir)
        source.image_dir = images_dir
    canonicalize = _canonicalizer(source, mapping, limits)
    jsonl = os.path.join(tmp, CANONICAL_NAME)
    total = source.size
    with CanonicalWriter(jsonl) as writer:
        validation = _write_records(
            source,
            canonicalize,
            writer,
            log,
            max_rows=limits.max_rows,
            fraction=fraction,
            seed=seed,
            progress=progress,
            total=total,
        )
        if log:
            raise log.invalid()
        if writer.rows == 0:
            raise _no_rows(sniffed)
        sha = writer.close()
    if progress is not None:
        progress(total, total)
    return ImportResult(
        sha256=sha,
        rows=writer.rows,
        canonical_path=jsonl,
        images_dir=images_dir,
        format=sniffed.format,
        encoding=source.encoding,
        schema=mapping.schema,
        columns=list(sniffed.columns),
        mapping=mapping,
        split_counts={"train": writer.rows - validation, "validation": validation},
        warnings=_warnings(source, sniffed, mapping),
        bytes=os.path.getsize(jsonl),
    )


def _write_records(
    source: Any,
    canonicalize: Canonicalizer,
    writer: CanonicalWriter,
    log: ErrorLog,
    *,
    max_rows: int,
    fraction: float,
    seed: int,
    progress: Progress | None,
    total: int,
) -> int:
    """Canonicalize the source's records into ``writer``, their problems into ``log`` (once
    one is found, the rest are only validated): the number of rows in the validation split."""
    validation = 0
    seen = 0
    for item in source.records():
        if isinstance(item, DatasetError):
            log.add(item)
            continue
        seen += 1
        if seen > max_rows:
            raise DatasetError(f"more than {max_rows:,} rows (the limit)", code="too_many_rows")
        if progress is not None and seen % PROGRESS_EVERY == 0:
            progress(source.bytes_read(), total)
        record, errors = canonicalize(item.data)
        if errors:
            for error in errors:
                log.add(_locate(error, item))
            continue
        if log:  # already invalid: keep validating, stop writing
            continue
        line = _dump_or_log(record, item, log, canonicalize.mapping)  # type: ignore[arg-type]
        if line is None:
            continue
        writer.write_line(line)
        if fraction and split_of(line, seed, fraction) == "validation":
            validation += 1
    return validation


def _dump_or_log(
    record: dict[str, Any], item: Rec, log: ErrorLog, mapping: Mapping
) -> bytes | None:
    """The record's canonical line, or None with the problem logged (text that UTF-8 cannot
    encode: the JSON readers refuse lone surrogates already, this is the last guard)."""
    try:
        return dump_record(record)
    except UnicodeEncodeError:
        problem = find_problem(record)
        column, reason = None, "has text that is not valid Unicode (a lone UTF-16 surrogate)"
        if problem is not None and problem.path:
            column = mapping.columns.get(str(problem.path[0]))
            reason = problem.reason(1)
        log.add(
            DatasetError(
                reason,
                column=column,
                row=item.row,
                line=item.line,
                path=item.path,
                code="bad_unicode",
            )
        )
        return None


def _warnings(source: Any, sniffed: Sniffed, mapping: Mapping) -> list[str]:
    """The source's warnings, and the columns the mapping left out (not for zip sources)."""
    warnings = list(source.warnings)
    unmapped = [c for c in sniffed.columns if c and c not in mapping.columns.values()]
    if unmapped and source.container != "zip":
        shown = ", ".join(f'"{c}"' for c in unmapped[:10]) + (", …" if len(unmapped) > 10 else "")
        warnings.append(f"unmapped columns were ignored: {shown}")
    return warnings


def preview(
    path: str | os.PathLike[str],
    filename: str,
    *,
    mapping: Mapping | None = None,
    template: str | None = None,
    n: int = 5,
    fmt: str | None = None,
    encoding: str | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
    sniffed: Sniffed | None = None,
) -> Preview:
    """The first `n` records rendered with `template` (the schema's default when None).

    File-level problems raise DatasetInvalid, a bad template raises TemplateError; bad records
    among the first ones are returned in `errors` (at most `n`).
    """
    path = os.fspath(path)
    try:
        if sniffed is None:
            sniffed = sniff(path, filename, fmt=fmt, encoding=encoding, limits=limits)
        mapping = _mapping_or_sample_errors(sniffed, mapping)
    except DatasetError as exc:
        raise DatasetInvalid([exc]) from None
    template = DEFAULT_TEMPLATES[mapping.schema] if template is None else template
    check_template(template, mapping.schema)
    samples: list[Sample] = []
    errors: list[DatasetError] = []
    try:
        source = open_source(path, filename, fmt=fmt, encoding=encoding, limits=limits)
        try:
            canonicalize = _canonicalizer(source, mapping, limits)
            scanned = 0
            for item in source.records():
                scanned += 1
                if isinstance(item, DatasetError):
                    errors.append(item)
                else:
                    record, problems = canonicalize(item.data)
                    if problems:
                        errors.extend(_locate(p, item) for p in problems)
                    else:
                        assert record is not None  # no problems: the canonicalizer gave a record
                        where = DatasetError("", row=item.row, line=item.line, path=item.path)
                        samples.append(
                            Sample(where.location, record, render_template(template, record))
                        )
                if len(samples) >= n or len(errors) >= n or scanned >= 20 * n:
                    break
        finally:
            source.close()
    except DatasetError as exc:
        errors.append(exc)
    return Preview(samples, errors[:n], mapping, template, sniffed)


def render_rows(
    canonical_path: str | os.PathLike[str],
    schema: str,
    template: str | None = None,
    *,
    offset: int = 0,
    limit: int = 20,
) -> list[Sample]:
    """One page of an imported version's records with their rendered text (0-based `offset`)."""
    if schema not in SCHEMAS:
        raise MappingError(f'unknown schema "{schema}"', code="bad_mapping")
    template = DEFAULT_TEMPLATES[schema] if template is None else template
    check_template(template, schema)
    return [
        Sample(f"row {offset + i + 1}", record, render_template(template, record))
        for i, record in enumerate(read_rows(canonical_path, offset, limit))
    ]
