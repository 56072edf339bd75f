"""Runners for the dataset jobs: load the version, call the pure code in workers/data, record
the report or the derived version through the dataset services."""

from __future__ import annotations

from apps.jobs.registry import JobContext
from workers.ml.reporting import JobCancelled, JobFailed


def _launcher(ctx: JobContext):
    """Who launched the job: a derived version is theirs (the four eyes rule follows lineage)."""
    from apps.jobs.models import Job

    return Job.objects.select_related("created_by").get(pk=ctx.job_id).created_by


def _version(ctx: JobContext):
    from apps.datasets.models import DatasetVersion
    from apps.datasets.storage import media_path

    version = (
        DatasetVersion.objects.select_related("dataset", "dataset__project")
        .filter(pk=ctx.params.version_id, dataset__project_id=ctx.project_id)
        .first()
    )
    if version is None:
        raise JobFailed(f"Dataset version {ctx.params.version_id} does not exist in this project")
    return version, media_path(version.storage_path)


def _progress(ctx: JobContext, phase_start: float = 0.0, phase_share: float = 1.0):
    def report(done: int, total: int) -> None:
        if ctx.reporter.should_stop():
            raise JobCancelled()
        fraction = phase_start + phase_share * (done / total if total else 1.0)
        ctx.reporter.step(int(fraction * 1000), 1000)

    return report


def _row_progress(ctx: JobContext, rows: int):
    """A scan's progress in rows (its kind's progress_unit): the scanner reads blocks of bytes,
    so the rows done are estimated from the bytes done, and exact once the last block is read."""
    total = max(rows, 1)

    def report(done: int, of: int) -> None:
        if ctx.reporter.should_stop():
            raise JobCancelled()
        ctx.reporter.step(total if not of or done >= of else int(total * done / of), total)

    return report


def run_pii_scan(ctx: JobContext) -> dict:
    from apps.datasets import services
    from workers.data.pii import scan_jsonl

    version, path = _version(ctx)
    ctx.reporter.log(f"scanning {version} ({version.rows} rows) for personal data")
    report = scan_jsonl(path, progress=_row_progress(ctx, version.rows)).to_dict()
    services.version_set_pii_report(version=version, report=report)
    counts = report.get("counts", {})
    ctx.reporter.log(
        "found: " + (", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing")
    )
    return {"version_id": version.pk, "counts": counts}


def run_redact(ctx: JobContext) -> dict:
    from apps.datasets import services
    from apps.datasets.models import Operation
    from workers.data.pii import redact_jsonl, scan_jsonl

    version, path = _version(ctx)
    out = ctx.workdir / "redacted.jsonl"
    ctx.reporter.log(f"redacting {version} with mode {ctx.params.mode}")
    result = redact_jsonl(
        path,
        out,
        ctx.params.mode,
        services.pseudonym_key(ctx.project_id),
        progress=_progress(ctx, 0.0, 0.6),
    )
    ctx.reporter.log("re-scanning the redacted rows")
    report = scan_jsonl(result.path, progress=_progress(ctx, 0.6, 0.4)).to_dict()
    new, created = services.version_derive(
        parent=version,
        canonical_path=result.path,
        sha256=result.sha256,
        rows=result.rows,
        operation=Operation.REDACT,
        params={"mode": ctx.params.mode, "replaced": result.replaced_counts},
        pii_report=report,
        actor=_launcher(ctx),
    )
    ctx.reporter.log(f"{'created' if created else 'found existing'} version v{new.number}")
    return {
        "version_id": new.pk,
        "version": new.number,
        "version_url": new.get_absolute_url(),  # the job page links the version it made
        "replaced": result.replaced_counts,
        "created": created,
    }


def run_dedup(ctx: JobContext) -> dict:
    from apps.datasets import services
    from apps.datasets.carry import carried_pii_report
    from apps.datasets.models import Operation
    from workers.data.dedup import find_duplicates, keep_one
    from workers.data.dedup.keep import rows_to_drop

    version, path = _version(ctx)
    p = ctx.params
    report = find_duplicates(
        path, semantic=p.semantic, threshold=p.threshold, progress=_progress(ctx, 0.0, 0.8)
    )
    services.version_set_dedup_report(version=version, report=report.to_dict())
    result = {"version_id": version.pk, "duplicates_to_drop": report.duplicates_to_drop}
    ctx.reporter.log(f"{report.duplicates_to_drop} row(s) duplicate an earlier row")
    if p.keep_one and report.duplicates_to_drop:
        out_path, sha256, rows = keep_one(path, ctx.workdir / "deduplicated.jsonl", report)
        # Computed before version_derive moves the file: the kept rows are copied unchanged, so
        # the parent's scan covers them (the child needs no second scan before approval).
        pii_report = carried_pii_report(
            parent=version,
            child_path=out_path,
            dropped=rows_to_drop(report.groups()),
            workdir=ctx.workdir,
            progress=_progress(ctx, 0.8, 0.2),
        )
        new, created = services.version_derive(
            parent=version,
            canonical_path=out_path,
            sha256=sha256,
            rows=rows,
            operation=Operation.DEDUP,
            params={
                "semantic": p.semantic,
                "threshold": p.threshold,
                "dropped": version.rows - rows,
            },
            actor=_launcher(ctx),
            pii_report=pii_report,
        )
        if not created and new.pii_report is None and pii_report is not None:
            services.version_set_pii_report(version=new, report=pii_report)
        ctx.reporter.log(f"kept one row per group: v{new.number} has {rows} rows")
        if pii_report is not None:
            ctx.reporter.log(_carried_log(version, pii_report))
        result.update(
            new_version_id=new.pk, new_version=new.number, new_version_url=new.get_absolute_url()
        )
    ctx.reporter.step(1000, 1000)
    return result


def _carried_log(parent, report: dict) -> str:
    carried = report.get("carried_from")
    found = report.get("total_findings", 0)
    if carried:
        return (
            f"PII report carried from v{parent.number}'s scan: {found} finding(s) in the kept rows"
        )
    return f"scanned the new version for personal data: {found} finding(s)"


def run_stats(ctx: JobContext) -> dict:
    from apps.datasets import services
    from workers.data import stats as data_stats
    from workers.data import tokenizers

    version, path = _version(ctx)
    ctx.reporter.log(f"counting lengths of {version} in {ctx.params.tokenizer}")
    tokenizer = tokenizers.load(ctx.params.tokenizer)
    ctx.reporter.step(1, 3)
    stats = data_stats.compute(path, version.dataset.schema, tokenizer)
    stats["tokenizer"] = ctx.params.tokenizer
    services.version_set_stats(version=version, stats=stats)
    ctx.reporter.step(3, 3)
    return {
        "version_id": version.pk,
        "tokenizer": ctx.params.tokenizer,
        "mean_length": stats.get("length", {}).get("mean"),
    }


def _import_progress(ctx: JobContext):
    """The import's progress, and a cancel raised between chunks of rows. Reading the file is
    the first half (bytes read of its size); the statistics and moderation report that follow
    take about as long, with no finer steps, so each end of a phase (done == total) moves the
    bar and says what comes next."""
    ends = 0

    def report(done: int, total: int) -> None:
        nonlocal ends
        if ctx.reporter.should_stop():
            raise JobCancelled()
        if total and done < total:
            ctx.reporter.step(int(500 * done / total), 1000)
            return
        ends += 1
        if ends == 1:
            ctx.reporter.log("every row is valid; computing statistics and the moderation report")
            ctx.reporter.step(500, 1000)
        else:
            ctx.reporter.log("recording the version")
            ctx.reporter.step(950, 1000)

    return report


def _storable(value):
    """Error dicts with every string UTF-8 can encode (a lone surrogate quoted from a cell is
    written as its escape): PostgreSQL's jsonb refuses the rest."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return value


def _lost(ctx: JobContext) -> bool:
    """This attempt no longer owns the job (its lease ran out): the reaper re-queues it and the
    next attempt reads the staged file again, so it must stay."""
    lost = getattr(ctx.reporter, "lost", None)
    return bool(lost is not None and lost.is_set())


def _fail_with_errors(ctx: JobContext, exc) -> JobFailed:
    """Keep the refusal's errors, with their places, as the job's result (the page and the API
    show them where they are), then fail the job with a one-line summary. The result is written
    here, fenced by this attempt, because a failed job's outcome carries only its error text."""
    from apps.jobs.models import Job
    from apps.jobs.states import ACTIVE

    Job.objects.filter(pk=ctx.job_id, attempt=ctx.attempt, state__in=ACTIVE).update(
        result={"errors": _storable(exc.errors), "total": exc.total}
    )
    first = _storable(exc.errors[0]["message"]) if exc.errors else ""
    summary = f"{exc.total:,} problem(s) in the file; nothing was imported"
    return JobFailed(f"{summary}. The first: {first}" if first else summary)


def run_import(ctx: JobContext) -> dict:
    """Import a staged upload. The staged file is the input: it goes once the job succeeded or
    was cancelled, and stays after a refusal (the user may change the mapping and try again)
    and while a lost worker's attempt is re-queued (the next attempt reads it again)."""
    from apps.datasets import services, storage
    from apps.datasets.validation import DatasetImportFailed
    from apps.projects.models import Project

    p = ctx.params
    launcher = _launcher(ctx)
    staged = storage.load_upload(
        p.upload, user_id=getattr(launcher, "pk", None), project_id=ctx.project_id
    )
    if staged is None:
        raise JobFailed("The uploaded file has expired (kept for 24 hours); upload it again")
    ctx.reporter.log(f"importing {staged.filename} ({staged.size:,} bytes)")
    try:
        version, created = services.staged_import(
            project=Project.objects.get(pk=ctx.project_id),
            actor=launcher,
            staged=staged,
            mapping=p.mapping,
            fmt=p.fmt,
            encoding=p.encoding,
            template=p.template,
            validation_fraction=p.validation_fraction,
            seed=p.seed,
            progress=_import_progress(ctx),
        )
    except JobCancelled:
        if not _lost(ctx):
            storage.discard_upload(staged)
            ctx.reporter.log("cancelled: nothing was imported")
        raise
    except DatasetImportFailed as exc:
        raise _fail_with_errors(ctx, exc) from None
    storage.discard_upload(staged)
    ctx.reporter.log(
        f"imported {version.rows:,} rows as v{version.number}"
        if created
        else f"this content is already v{version.number}; nothing new was stored"
    )
    ctx.reporter.step(1000, 1000)
    return {
        "version_id": version.pk,
        "dataset_id": version.dataset_id,
        "version": version.number,
        "rows": version.rows,
        "created": created,
        "url": version.get_absolute_url(),
    }
