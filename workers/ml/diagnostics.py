"""Worker diagnostics: what hardware a worker has and how fast it multiplies matrices.

A real, small job every install can run first: it shows the device a GPU worker would use
(CUDA, bf16 support) and its sustained matmul throughput, step by step, with checkpoints.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

from workers.ml.checkpoints import CheckpointStore
from workers.ml.reporting import JobCancelled, JobFailed, Reporter


@dataclass(frozen=True)
class DiagnosticsConfig:
    steps: int = 20
    matrix_size: int = 256
    step_seconds: float = 0.25
    device: str = "auto"  # auto | cpu | cuda
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.device not in {"auto", "cpu", "cuda"}:
            raise ValueError("device must be auto, cpu or cuda")


def pick_device(requested: str):
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise JobFailed("CUDA was requested but this worker has no usable GPU")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def describe_environment(device) -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            bf16=torch.cuda.is_bf16_supported(),
            gpu_count=torch.cuda.device_count(),
        )
    return info


def run_diagnostics(
    config: DiagnosticsConfig, reporter: Reporter, checkpoints: CheckpointStore
) -> dict:
    """Measure matmul throughput for `steps` windows; resumable from its last checkpoint."""
    import torch

    device = pick_device(config.device)
    env = describe_environment(device)
    for key, value in env.items():
        reporter.log(f"{key}: {value}")
    dtype = torch.bfloat16 if device.type == "cuda" and env.get("bf16") else torch.float32
    n = config.matrix_size
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    start_step, history = 0, []
    saved = checkpoints.load_json_state()
    if saved is not None:
        start_step, state = saved
        history = state.get("gflops", [])
        reporter.log(f"resuming after step {start_step}")
    for step in range(start_step + 1, config.steps + 1):
        if reporter.should_stop():
            raise JobCancelled()
        count, t0 = 0, time.perf_counter()
        while True:
            c = a @ b
            count += 1
            if device.type == "cuda" and count % 8 == 0:
                torch.cuda.synchronize(device)  # keep the launch queue short so timing is honest
            elapsed = time.perf_counter() - t0
            if elapsed >= config.step_seconds:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
        del c
        gflops = 2 * n**3 * count / elapsed / 1e9
        history.append(round(gflops, 3))
        reporter.step(
            step, config.steps, {"gflops": gflops, "ms_per_matmul": elapsed / count * 1000}
        )
        if step % config.checkpoint_every == 0 and step < config.steps:
            checkpoints.save_json_state(step, {"gflops": history})
    best = max(history) if history else 0.0
    reporter.log(f"best {best:.1f} GFLOP/s on {env['device']} ({dtype})")
    return {
        "environment": env,
        "dtype": str(dtype).removeprefix("torch."),
        "best_gflops": best,
        "gflops": history,
    }
