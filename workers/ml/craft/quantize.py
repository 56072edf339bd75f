"""Post-training quantization of a causal LM, measured before and after on validation rows.

`quantize()` loads the model (a LoRA adapter merged in when given), measures it, quantizes it,
writes a loadable folder, loads that folder back and measures it the same way. The report says
what a user weighs: size on disk, tokens/s, perplexity, and how often the quantized model's most
likely next token is the original's (top-1 agreement).

Methods (config.QUANT_METHODS):
- int8-weight-only, int8-dynamic: the int8 folder of int8.py, on the CPU (any worker).
- bnb-8bit, bnb-4bit: bitsandbytes through transformers (LLM.int8 / NF4), saved with
  save_pretrained (safetensors + quantization_config in config.json) and loaded back with
  from_pretrained on a CUDA GPU; refused where CUDA or bitsandbytes is missing.
GPTQ is not offered: its library (gptqmodel) ships only as a source package that needs a CUDA
build toolchain, so it does not install on these machines.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.craft.config import QuantizeConfig
from workers.ml.craft.evaluation import (
    agreement,
    folder_bytes,
    load_text_model,
    perplexity,
    prompt_ids,
    tokens_per_second,
    top1_predictions,
)
from workers.ml.craft.runfolder import RESULT_NAME, fingerprint, prepare_run_folder, write_card
from workers.ml.finetune.data import encode_rows
from workers.ml.finetune.files import replace_dir, write_json
from workers.ml.reporting import JobFailed, NullReporter, Reporter

__all__ = ["MODEL_DIR", "QuantizeResult", "check_method", "load_quantized", "quantize"]

MODEL_DIR = "model"
REPORT_NAME = "report.json"


@dataclass
class QuantizeResult:
    status: str
    method: str
    model_dir: str
    report: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_method(method: str, *, cuda_available: bool | None = None) -> str:
    """The device the method runs on ("cpu" or "cuda"), or JobFailed saying what is missing."""
    if method in ("int8-weight-only", "int8-dynamic"):
        return "cpu"
    if method not in ("bnb-8bit", "bnb-4bit"):
        raise JobFailed(f"unknown quantization method {method!r}")
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    bits = method.removeprefix("bnb-")
    if not cuda_available:
        raise JobFailed(
            f"{bits} quantization with bitsandbytes needs a CUDA GPU, and this worker has none. "
            "On the CPU choose int8-weight-only (close to the original) or int8-dynamic "
            "(faster, less accurate)."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise JobFailed(
            f"{bits} quantization needs the bitsandbytes package on the GPU worker "
            "(pip install bitsandbytes); int8-weight-only works without it."
        )
    return "cuda"


def load_quantized(folder: str | os.PathLike[str], *, device: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) from a folder quantize() wrote: the int8 format, or a bitsandbytes
    folder (its config.json carries quantization_config; loads on a CUDA GPU only)."""
    from workers.ml.craft.int8 import is_int8_folder, load_int8_folder

    if is_int8_folder(folder):
        return load_int8_folder(folder, device="cpu" if device == "auto" else device)
    check_method("bnb-8bit")  # any bitsandbytes folder needs what 8-bit needs
    from workers.ml.models import load_causal_lm

    return load_causal_lm(folder, device="cuda" if device == "auto" else device)


@timed("craft.quantize")
def quantize(
    config: QuantizeConfig,
    *,
    model_dir: str | os.PathLike[str],
    eval_rows: Iterable[Mapping[str, Any]],
    template: str,
    output_dir: str | os.PathLike[str],
    adapter_dir: str | os.PathLike[str] | None = None,
    reporter: Reporter | None = None,
    source_info: Mapping[str, Any] | None = None,
) -> QuantizeResult:
    """Quantize the model in `model_dir` (with `adapter_dir` merged) by config.method; measure
    it before and after on `eval_rows` rendered with `template` (see the module doc)."""
    reporter = reporter or NullReporter()
    output_dir = Path(output_dir)
    device = check_method(config.method)
    rows = [dict(r) for r in eval_rows][: config.max_eval_rows]
    if not rows:
        raise JobFailed("no validation rows to measure perplexity on")
    sources = [str(Path(p).resolve()) if p else None for p in (model_dir, adapter_dir)]
    done = prepare_run_folder(
        output_dir,
        fingerprint(config.to_dict(), sources, template, rows),
        resume=True,
        reporter=reporter,
        produced=(MODEL_DIR, REPORT_NAME),
    )
    if done is not None:
        return QuantizeResult(**done)
    steps = 4
    reporter.step(0, steps)
    original, tokenizer = load_text_model(
        model_dir,
        adapter_dir=adapter_dir,
        device=device,
        dtype="fp32" if device == "cpu" else "auto",
    )
    encoded = encode_rows(rows, tokenizer, template, max_seq_length=config.max_seq_length)
    examples = encoded.examples
    if not examples:
        raise JobFailed("no validation example is left after tokenization (all rows empty?)")
    pad = tokenizer.pad_token_id
    prompts = prompt_ids(examples, config.speed_prompts)
    reporter.log(f"measuring the original on {len(examples)} validation examples")
    before = {
        "perplexity_before": perplexity(original, examples, pad_id=pad),
        "tokens_per_second_before": tokens_per_second(
            original, tokenizer, prompts, new_tokens=config.speed_tokens
        ),
        "size_bytes_before": folder_bytes(model_dir),
    }
    reference = top1_predictions(original, examples, pad_id=pad)
    reporter.step(1, steps, {k: float(v) for k, v in before.items()})
    _check_stop(reporter)

    tmp = Path(tempfile.mkdtemp(prefix=".tmp-model-", dir=output_dir))
    started = time.perf_counter()
    details = _write_quantized(
        config.method, original, tokenizer, model_dir, adapter_dir, tmp, dict(source_info or {})
    )
    del original
    quantize_seconds = time.perf_counter() - started
    reporter.step(2, steps)
    _check_stop(reporter)

    model, tokenizer = load_quantized(tmp, device=device)
    after = {
        "perplexity_after": perplexity(model, examples, pad_id=pad),
        "tokens_per_second_after": tokens_per_second(
            model, tokenizer, prompts, new_tokens=config.speed_tokens
        ),
        "size_bytes_after": folder_bytes(tmp),
        "top1_agreement": agreement(reference, top1_predictions(model, examples, pad_id=pad)),
    }
    reporter.step(3, steps)
    report = _report(config, before, after, len(examples), device, quantize_seconds, details)
    reporter.log(
        f"{config.method}: size {report['size_ratio']:.2f}x, tokens/s {report['speedup']:.2f}x, "
        f"perplexity {report['perplexity_before']:.2f} -> {report['perplexity_after']:.2f}, "
        f"top-1 agreement {report['top1_agreement']:.1%}"
    )
    write_json(tmp / REPORT_NAME, report)
    write_card(
        tmp / "README.md",
        title=f"{source_info.get('model', 'Model') if source_info else 'Model'} ({config.method})",
        tags=("quantized", config.method, "atelier"),
        intro=_USE.get(config.method, ""),
        tables={"Provenance": dict(source_info or {}), "Report": report},
    )
    replace_dir(tmp, output_dir / MODEL_DIR)
    result = QuantizeResult(
        status="succeeded",
        method=config.method,
        model_dir=str(output_dir / MODEL_DIR),
        report=report,
    )
    write_json(output_dir / RESULT_NAME, result.to_dict())
    reporter.step(
        steps, steps, {k: float(v) for k, v in report.items() if isinstance(v, int | float)}
    )
    return result


_USE = {
    "int8-weight-only": "int8 weights per output channel, float activations (Atelier int8 "
    "folder: workers.ml.craft.int8.load_int8_folder).",
    "int8-dynamic": "int8 weights per output channel, torch.ao dynamic int8 activations on the "
    "CPU (Atelier int8 folder: workers.ml.craft.int8.load_int8_folder).",
    "bnb-8bit": "bitsandbytes LLM.int8; loads with AutoModelForCausalLM.from_pretrained on a CUDA GPU.",
    "bnb-4bit": "bitsandbytes NF4 with double quantization; loads with "
    "AutoModelForCausalLM.from_pretrained on a CUDA GPU.",
}


def _check_stop(reporter: Reporter) -> None:
    from workers.ml.reporting import JobCancelled

    if reporter.should_stop():
        raise JobCancelled()


def _write_quantized(
    method: str,
    original: Any,
    tokenizer: Any,
    model_dir: Any,
    adapter_dir: Any,
    out: Path,
    source: dict[str, Any],
) -> dict[str, Any]:
    """Quantize and write the folder; the original model is consumed (int8 works in place)."""
    if method.startswith("int8-"):
        from workers.ml.craft.int8 import quantize_linear_layers, save_int8_folder

        runtime = method.removeprefix("int8-")
        model, layers = quantize_linear_layers(original, runtime)
        save_int8_folder(model, tokenizer, out, runtime=runtime, layers=layers, source=source)
        return {"quantized_layers": len(layers)}
    return _write_bitsandbytes(method, original, tokenizer, model_dir, adapter_dir, out)


def _write_bitsandbytes(
    method: str, original: Any, tokenizer: Any, model_dir: Any, adapter_dir: Any, out: Path
) -> dict[str, Any]:
    """bitsandbytes quantizes while loading: load the folder (the merged model, written first
    when an adapter is merged in) with load_in 8/4-bit, then save it with its config."""
    from workers.ml.models import QuantizationUnavailable, load_causal_lm

    source = Path(model_dir)
    merged = None
    if adapter_dir is not None:
        merged = Path(tempfile.mkdtemp(prefix=".tmp-merged-", dir=out.parent))
        original.save_pretrained(str(merged), safe_serialization=True)
        tokenizer.save_pretrained(str(merged))
        source = merged
    try:
        model, _ = load_causal_lm(source, device="cuda", quantization=method.removeprefix("bnb-"))
    except QuantizationUnavailable as exc:
        raise JobFailed(str(exc)) from exc
    finally:
        if merged is not None:
            shutil.rmtree(merged, ignore_errors=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return {"bitsandbytes": method.removeprefix("bnb-")}


def _report(
    config: QuantizeConfig,
    before: dict[str, float],
    after: dict[str, float],
    n_examples: int,
    device: str,
    seconds: float,
    details: dict[str, Any],
) -> dict[str, Any]:
    speed0, speed1 = before["tokens_per_second_before"], after["tokens_per_second_after"]
    size0, size1 = before["size_bytes_before"], after["size_bytes_after"]
    return {
        "method": config.method,
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in {**before, **after}.items()},
        "size_ratio": round(size0 / size1, 3) if size1 else 0.0,
        "speedup": round(speed1 / speed0, 3) if speed0 else 0.0,
        "eval_examples": n_examples,
        "device": device,
        "quantize_seconds": round(seconds, 3),
        **details,
    }
