"""Runner for the diagnostics job: the pure measurement in workers/ml/diagnostics."""

from __future__ import annotations

from apps.jobs.registry import JobContext


def run(ctx: JobContext) -> dict:
    from workers.ml.diagnostics import DiagnosticsConfig, run_diagnostics

    p = ctx.params
    config = DiagnosticsConfig(
        steps=p.steps, matrix_size=p.matrix_size, step_seconds=p.step_seconds, device=p.device
    )
    return run_diagnostics(config, ctx.reporter, ctx.checkpoints)
