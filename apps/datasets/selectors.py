from __future__ import annotations

import json
from itertools import islice
from typing import Any

from django.http import Http404

from apps.datasets import storage
from apps.datasets.models import Dataset, DatasetVersion
from apps.datasets.storage import media_path
from apps.projects.selectors import ProjectAccess, project_access

PAGE_SIZE = 20


def dataset_access(
    *, user, project_id: int, dataset_id: int, need: str = "view"
) -> tuple[ProjectAccess, Dataset]:
    access = project_access(user=user, project_id=project_id, need=need)
    dataset = Dataset.objects.filter(pk=dataset_id, project=access.project).first()
    if dataset is None:
        raise Http404("No such dataset")
    return access, dataset


def upload_target(*, access: ProjectAccess, dataset_id: str | None) -> Dataset | None:
    """The dataset an upload adds a version to (None: a new dataset); 404 for any other id."""
    if not dataset_id:
        return None
    # A junk id (not digits) names no dataset: a 404, not the ORM's ValueError.
    target = None
    if dataset_id.isdecimal():
        target = Dataset.objects.filter(project=access.project, pk=dataset_id).first()
    if target is None:
        raise Http404("No such dataset")
    return target


def staged_upload(
    *, access: ProjectAccess, user, token: str
) -> tuple[storage.StagedUpload, dict, Dataset | None]:
    """The user's own staged upload in this project, its first step's fields and its dataset."""
    staged = storage.load_upload(token, user_id=user.pk, project_id=access.project.pk)
    if staged is None:
        raise Http404("This upload has expired or is not yours; upload the file again")
    meta = json.loads((staged.path / "form.json").read_text())
    target = (
        Dataset.objects.filter(project=access.project, pk=meta.get("dataset")).first()
        if meta.get("dataset")
        else None
    )
    return staged, meta, target


def staged_sniff(
    staged: storage.StagedUpload, *, fmt: str | None = None, encoding: str | None = None
):
    """(format, encoding and suggested mapping, None) or (None, why the file cannot be read:
    the problem as a dict with its message and place, as an import's errors are)."""
    from workers.data.errors import DatasetError, DatasetInvalid
    from workers.data.formats import sniff

    try:
        return sniff(staged.file, staged.filename, fmt=fmt, encoding=encoding), None
    except DatasetError as exc:
        return None, exc.to_dict()
    except DatasetInvalid as exc:
        return None, (exc.to_list() or [{"message": str(exc)}])[0]


def version_access(
    *, user, project_id: int, dataset_id: int, number: int, need: str = "view"
) -> tuple[ProjectAccess, DatasetVersion]:
    access, dataset = dataset_access(
        user=user, project_id=project_id, dataset_id=dataset_id, need=need
    )
    version = (
        DatasetVersion.objects.select_related("dataset", "parent", "created_by", "decided_by")
        .filter(dataset=dataset, number=number)
        .first()
    )
    if version is None:
        raise Http404("No such version")
    return access, version


def project_datasets(*, access: ProjectAccess) -> list[Dataset]:
    datasets = list(Dataset.objects.filter(project=access.project).select_related("created_by"))
    latest: dict[int, DatasetVersion] = {}
    for v in DatasetVersion.objects.filter(dataset__in=datasets).order_by("dataset_id", "-number"):
        latest.setdefault(v.dataset_id, v)
    for d in datasets:
        d.latest = latest.get(d.pk)  # type: ignore[attr-defined]  # a display-only attribute
    return datasets


def version_rows(
    version: DatasetVersion, *, page: int = 1, page_size: int = PAGE_SIZE
) -> list[tuple[int, dict]]:
    """One page of rows (1-based row numbers), read by streaming the version's JSONL file."""
    start = max(0, (page - 1) * page_size)
    with open(media_path(version.storage_path), encoding="utf-8") as f:
        return [
            (start + i + 1, json.loads(line))
            for i, line in enumerate(islice(f, start, start + page_size))
        ]


def lineage(version: DatasetVersion) -> list[DatasetVersion]:
    """The version and its ancestors, oldest first."""
    chain, seen = [], set()
    node: DatasetVersion | None = version
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        chain.append(node)
        node = node.parent
    return list(reversed(chain))


def moderation_summary(version: DatasetVersion, *, page_size: int = PAGE_SIZE) -> dict | None:
    """The version's moderation report for its page: categories by count, and each example
    with the page of rows it is on (None: the rows were never scanned)."""
    report = version.moderation_report
    if not isinstance(report, dict):
        return None
    by_category = sorted(
        (report.get("by_category") or {}).items(), key=lambda item: (-item[1], item[0])
    )
    examples = [
        {**example, "page": (int(example.get("row") or 1) - 1) // page_size + 1}
        for example in report.get("examples") or []
    ]
    return {**report, "categories": by_category, "examples": examples}


def import_job(
    *, user, project_id: int, job_id: int, need: str = "view"
) -> tuple[ProjectAccess, Any]:
    """A job of the project the user may see, with the capability checked (404 otherwise);
    the caller sends a job of another kind to its own page."""
    from apps.jobs.selectors import job_access

    return job_access(user=user, project_id=project_id, job_id=job_id, need=need)


def import_upload(*, access: ProjectAccess, user, job) -> storage.StagedUpload | None:
    """The staged file an import job reads, while it is still there and this user's."""
    token = (job.params or {}).get("upload") or ""
    return storage.load_upload(str(token), user_id=user.pk, project_id=access.project.pk)


def import_version(*, access: ProjectAccess, job) -> DatasetVersion | None:
    """The version an import job made or found (also one a cancel came too late to stop)."""
    result = job.result if isinstance(job.result, dict) else {}
    version_id = result.get("version_id")
    if not isinstance(version_id, int):
        return None
    return (
        DatasetVersion.objects.select_related("dataset")
        .filter(pk=version_id, dataset__project=access.project)
        .first()
    )


def import_refusal(job) -> tuple[list[dict], int]:
    """A failed import's errors with their places (row, line, column, entry, field) and their
    count; a job that failed another way (its worker died) gives its error as the one entry."""
    result = job.result if isinstance(job.result, dict) else {}
    errors = [e for e in result.get("errors") or [] if isinstance(e, dict)]
    if not errors and job.error:
        errors = [{"message": job.error}]
    return errors, max(int(result.get("total") or 0), len(errors))


def printable(value: Any, limit: int = 160) -> str:
    """A cell as the page shows it: text as is, anything else as JSON, cut to `limit`, with
    what UTF-8 cannot encode (a lone surrogate from a JSON escape) written as its escape, so a
    sample can never break the page."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def sniff_display(sniffed) -> dict[str, Any]:
    """The sniffed file for the mapping page: columns, the first rows as cells in column order
    and the warnings, every string safe to render."""
    columns = list(sniffed.columns)
    return {
        "format": printable(sniffed.format or ""),
        "encoding": printable(sniffed.encoding or ""),
        "columns": [printable(c, 200) for c in columns],
        "rows": [
            [printable(row[c]) if c in row else "" for c in columns]
            for row in sniffed.sample_rows[:5]
        ],
        "warnings": [printable(w, 2000) for w in sniffed.warnings],
    }


def active_import(*, access: ProjectAccess, token: str):
    """The import job still queued or running on this staged upload, if any: a second submit
    of the mapping form follows it instead of starting another."""
    from apps.datasets.jobkinds import IMPORT_KIND
    from apps.jobs.models import Job
    from apps.jobs.states import TERMINAL

    return (
        Job.objects.filter(project=access.project, kind=IMPORT_KIND, params__upload=token)
        .exclude(state__in=TERMINAL)
        .order_by("-pk")
        .first()
    )


# The length histogram's drawing, in SVG user units (pixels): the bars' area, room above it for
# the tallest bar's count, and below it for the axis labels.
HISTOGRAM_PLOT_HEIGHT = 150
HISTOGRAM_TOP = 18
HISTOGRAM_LABELS = 8  # at most this many axis labels, so that each has room to be read
HISTOGRAM_COUNT_CHARS = (
    80  # counts over every bar while all of them fit in about this many characters
)


def _pct(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def length_histogram(stats: dict | None) -> dict[str, Any] | None:
    """The version's length histogram drawn to fill its box: the tallest bar is the plot's full
    height and the others are scaled to it (not to the total rows, which left the tallest a
    sliver when the lengths spread over many buckets); widths are shares of the box, so the
    labels keep their size at any width. None: no histogram."""
    histogram = ((stats or {}).get("length") or {}).get("histogram") or []
    if not histogram:
        return None
    n = len(histogram)
    tallest = max(int(b.get("count") or 0) for b in histogram) or 1
    axis = HISTOGRAM_TOP + HISTOGRAM_PLOT_HEIGHT
    every = -(-n // HISTOGRAM_LABELS)
    all_counts = n * max(len(str(b.get("count") or 0)) for b in histogram) <= HISTOGRAM_COUNT_CHARS
    bars = []
    for i, b in enumerate(histogram):
        count = int(b.get("count") or 0)
        height = count * HISTOGRAM_PLOT_HEIGHT / tallest
        if count:
            height = max(height, 1.0)  # a bucket with rows is never invisible
        bars.append(
            {
                "min": b.get("min"),
                "max": b.get("max"),
                "count": count,
                "x": _pct((i + 0.08) * 100 / n),
                "width": _pct(0.84 * 100 / n),
                "center": _pct((i + 0.5) * 100 / n),
                "y": _pct(axis - height),
                "height": _pct(height),
                "label": i % every == 0,
                "show_count": bool(count) and (all_counts or count == tallest),
            }
        )
    return {
        "bars": bars,
        "plot_height": HISTOGRAM_PLOT_HEIGHT,
        "axis_y": axis,
        "label_y": axis + 16,
        "height": axis + 24,
    }
