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


def run_pii_scan(ctx: JobContext) -> dict:
    from apps.datasets import services
    from workers.data.pii import scan_jsonl

    version, path = _version(ctx)
    ctx.reporter.log(f"scanning {version} ({version.rows} rows) for personal data")
    report = scan_jsonl(path, progress=_progress(ctx)).to_dict()
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
        "replaced": result.replaced_counts,
        "created": created,
    }


def run_dedup(ctx: JobContext) -> dict:
    from apps.datasets import services
    from apps.datasets.models import Operation
    from workers.data.dedup import find_duplicates, keep_one

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
        )
        ctx.reporter.log(f"kept one row per group: v{new.number} has {rows} rows")
        result.update(new_version_id=new.pk, new_version=new.number)
    ctx.reporter.step(1000, 1000)
    return result


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
