"""Child processes of bench/finetune.py (each one a fresh interpreter, so it pays its own imports).

    python bench/_finetune_child.py build-tiny MODEL_DIR
    python bench/_finetune_child.py bare SPEC.json OUT.json
    python bench/_finetune_child.py smollm2 SPEC.json OUT.json

- build-tiny: `workers.ml.models.build_tiny_llama(MODEL_DIR, seed=0)` (setup, not measured).
- bare: `bench._finetune_bare.bare_run(...)` on the spec's model, rows, params and template: the
  team's recipe as a plain script. It also stamps when the interpreter started running this file
  and how long the heavy imports took (the same imports bare_run would do first), so the parent
  can split the bare run's wall time.
- smollm2: `ensure_smollm2(cache)` (reuses a finished conversion), then a few LoRA steps through
  the platform's own training function `workers.ml.finetune.train_lora` (no eval, no checkpoint),
  recording the wall-clock time of every optimizer step.

Writes one JSON object to OUT.json; the exit status says whether it worked.
"""

from __future__ import annotations

import json
import sys
import time

T_START = time.time()  # before anything heavy: interpreter start-up is what precedes this line

import os  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _heavy_imports() -> float:
    t0 = time.perf_counter()
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import Trainer  # noqa: F401  (lazy module: the real import)

    return time.perf_counter() - t0


def cmd_build_tiny(model_dir: str) -> int:
    from workers.ml.models import build_tiny_llama

    build_tiny_llama(model_dir, seed=0)
    return 0


def cmd_bare(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    import_seconds = _heavy_imports()
    from bench._finetune_bare import bare_run
    from bench._finetune_probes import wrap_trainer_train

    stamps: dict = {}
    wrap_trainer_train(lambda kind, **fields: stamps.update(fields))  # wall + CPU of train()

    out = bare_run(
        spec["model_dir"],
        spec["rows"],
        spec["params"],
        template=spec["template"],
        output_dir=spec.get("output_dir"),
    )
    out.update(
        t_child_start=T_START,
        import_seconds=round(import_seconds, 4),
        t_done=time.time(),
        torch_threads=__import__("torch").get_num_threads(),
        train_thread_cpu=stamps.get("cpu"),
        train_process_cpu=stamps.get("process_cpu"),
        step_ms=stamps.get("step_ms"),
    )
    Path(out_path).write_text(json.dumps(out), encoding="utf-8")
    return 0


class _StepClock:
    """A Reporter that keeps the wall time of every step report (one per optimizer step)."""

    def __init__(self) -> None:
        self.times: list[tuple[int, float]] = []
        self.logs: list[str] = []

    def step(self, step, total, metrics=None):
        if not self.times or self.times[-1][0] != step:
            self.times.append((int(step), time.perf_counter()))

    def log(self, message, level="info"):
        self.logs.append(str(message))

    def preview(self, image):
        pass

    def artifact(self, path, name=None):
        pass

    def should_stop(self):
        return False

    def flush(self):
        pass


def cmd_smollm2(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    import_seconds = _heavy_imports()
    import torch

    from workers.ml.finetune import LoraFinetuneConfig, train_lora
    from workers.ml.models import ensure_smollm2

    t0 = time.perf_counter()
    folder = ensure_smollm2(spec["cache_dir"])
    prepare_seconds = time.perf_counter() - t0
    config = LoraFinetuneConfig.from_dict(spec["params"])
    clock = _StepClock()
    t0 = time.perf_counter()
    result = train_lora(
        config,
        base_model_dir=folder,
        train_rows=spec["rows"],
        eval_rows=[],
        template=spec["template"],
        output_dir=spec["output_dir"],
        reporter=clock,
        resume=False,
    )
    total_seconds = time.perf_counter() - t0
    m = result.metrics
    steps = [t for s, t in clock.times if s >= 1]
    out = {
        "model_dir": str(folder),
        "status": result.status,
        "steps": result.global_step,
        "train_seconds": m.get("train_seconds"),
        "steps_per_second": round(result.global_step / m["train_seconds"], 4)
        if m.get("train_seconds")
        else 0.0,
        "step_seconds": [round(b - a, 3) for a, b in zip(steps, steps[1:], strict=False)],
        "train_tokens_per_second": m.get("train_tokens_per_second"),
        "train_tokens": m.get("train_tokens"),
        "train_loss": m.get("train_loss"),
        "prepare_seconds": round(prepare_seconds, 3),
        "total_seconds": round(total_seconds, 3),
        "import_seconds": round(import_seconds, 3),
        "torch_threads": torch.get_num_threads(),
        "details": result.details,
    }
    Path(out_path).write_text(json.dumps(out), encoding="utf-8")
    return 0


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "build-tiny":
        return cmd_build_tiny(*args)
    if cmd == "bare":
        return cmd_bare(*args)
    if cmd == "smollm2":
        return cmd_smollm2(*args)
    print(f"unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
