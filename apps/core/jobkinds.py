"""Job kind: worker diagnostics (what device a worker has, how fast it is)."""

from typing import Literal

from pydantic import BaseModel, Field

from apps.jobs.registry import JobKind, register, runner_at


class DiagnosticsParams(BaseModel):
    model_config = {"extra": "forbid"}

    steps: int = Field(20, ge=1, le=1000, title="Steps", description="Measurement windows to run")
    matrix_size: int = Field(
        256,
        ge=16,
        le=16384,
        title="Matrix size",
        description="Side of the square matrices multiplied",
    )
    step_seconds: float = Field(0.25, ge=0.01, le=60, title="Seconds per step")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", title="Device", description="auto uses CUDA when the worker has it"
    )


def budget(project, params: DiagnosticsParams, rules) -> dict[str, str]:
    if params.matrix_size > rules.diagnostics_max_matrix:
        return {
            "matrix_size": (
                f"At most {rules.diagnostics_max_matrix} (the platform's limit); asked "
                f"{params.matrix_size}"
            )
        }
    return {}


register(
    JobKind(
        name="diagnostics",
        label="GPU worker diagnostics",
        queue="gpu",
        params=DiagnosticsParams,
        runner=runner_at("apps.core.runners:run"),
        budget=budget,
        description="Checks the GPU worker: its device, memory, bf16 support and matmul speed, live.",
        interruptible=True,
    )
)
