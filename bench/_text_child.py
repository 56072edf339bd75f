"""Subprocess side of bench/text.py (no Django): prepare the model folder, and the bare script.

    python bench/_text_child.py build MODELS_DIR MODEL
    python bench/_text_child.py bare MODEL_DIR

``build`` prepares the built-in model's folder under MODELS_DIR where the platform's
``model_folder`` will find it (SmolLM2: the GGUF converted to safetensors; tiny-llama: built in
code), so the bench's setup can do it beside ``manage.py migrate``.

``bare`` is the team's script as plain transformers, kept alive so that bench/text.py can
alternate bare and platform runs one generation at a time: it loads the folder once
(``AutoModelForCausalLM.from_pretrained``, float32, ``AutoTokenizer``), then for each JSON line
read on stdin (``{"prompt", "max_new_tokens", "repetition_penalty"}``) applies the chat template
and runs ``model.generate(..., do_sample=False, streamer=TextIteratorStreamer(...))`` in a thread
under ``torch.inference_mode()`` while this thread reads the streamer -- the pattern of the
transformers documentation, and the same two threads the platform's textgen runs. It answers one
JSON line on stdout: wall-clock stamps (``time.time()``) of the generate call, the first and last
non-empty streamed text and the end of generate, the new tokens, the text and the process's CPU
seconds. Nothing of the platform is imported, not even to time it.

Timing probes: the worker of bench/text.py imports this module through
ATELIER_JOB_KIND_MODULES=bench._text_child (it registers no job kind). When
ATELIER_BENCH_TEXT_PROBE_DIR is set it subscribes to the product's timing points
(workers/common/timing.py): textgen's stream (generate call, first token, last text, time spent
in the text callback), its model cache lookup, the playground runner's answer saving, job
claims and the JobReporter's flushes, and appends one JSON line per timed call to one file per
process.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from bench._common import JsonlProbes, read_probes  # noqa: E402, F401 - read_probes: for the bench

# ---------------------------------------------------------------------------- worker probes

PROBE_ENV = "ATELIER_BENCH_TEXT_PROBE_DIR"
_record = JsonlProbes(PROBE_ENV).record


def _stream_fields(f: dict) -> dict:
    return {
        "first_text": f.get("first_text"),
        "last_text": f.get("last_text"),
        "callback_s": f.get("callback_s"),
        "deltas": f.get("deltas"),
    }


# Timing point (workers/common/timing.py) -> (probe kind, its fields): what bench/text.py reads.
PROBES = {
    "textgen.stream": ("stream", _stream_fields),
    "textgen.load": ("load", lambda f: {"loaded": f["result"][2]}),
    "playground.save_answer": ("save_answer", None),
    "models.model_folder": ("model_folder", None),
    "jobs.claim": ("job_claim", lambda f: {"job": f["kwargs"].get("job_id")}),
    "reporter.flush": ("flush", None),
}

_on_timed = None


def install_probes() -> None:
    global _on_timed
    if not os.environ.get(PROBE_ENV):
        return
    from bench._common import probe_subscriber
    from workers.common import timing

    if _on_timed is None:
        _on_timed = probe_subscriber(PROBES, _record, cpu=True)
        timing.subscribe(_on_timed)
        _wrap_writes()


def _wrap_writes() -> None:
    """The reporter's writes (writer thread and forced flushes) have no timing point of their
    own: wrapped here, in the worker only, to record their wall and thread CPU time."""
    from workers.tasks import reporter

    def wrap(owner, name: str, kind: str) -> None:
        inner = getattr(owner, name)

        def timed_call(*args, **kwargs):
            t0, c0 = time.time(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                _record(kind, t0=t0, t1=time.time(), cpu=time.thread_time() - c0)

        setattr(owner, name, timed_call)

    wrap(reporter.JobReporter, "_flush_locked", "write")


# ---------------------------------------------------------------------------- build


def build(models_dir: str, model: str) -> None:
    if model == "smollm2-135m-instruct":
        from workers.ml.models import ensure_smollm2

        print(ensure_smollm2(models_dir), flush=True)
    elif model == "tiny-llama":
        from workers.ml.models import build_tiny_llama

        print(build_tiny_llama(Path(models_dir) / "tiny-llama", seed=0), flush=True)
    else:
        raise SystemExit(f"unknown built-in text model {model!r}")


# ---------------------------------------------------------------------------- bare


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def bare(model_dir: str) -> None:
    t0 = time.time()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t_imported = time.time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    print(
        json.dumps(
            {"ready": True, "import_s": t_imported - t0, "load_s": time.time() - t_imported}
        ),
        flush=True,
    )

    for line in sys.stdin:
        if line.strip():
            print(json.dumps(_generate_once(model, tokenizer, json.loads(line))), flush=True)


def _generate_once(model, tokenizer, req: dict) -> dict:
    import torch
    from transformers import TextIteratorStreamer

    messages = [{"role": "user", "content": req["prompt"]}]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    else:
        inputs = tokenizer(req["prompt"], return_tensors="pt")
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    out: dict = {}

    def work() -> None:
        with torch.inference_mode():
            out["ids"] = model.generate(
                **inputs,
                streamer=streamer,
                max_new_tokens=req["max_new_tokens"],
                do_sample=False,
                repetition_penalty=req["repetition_penalty"],
            )
        out["t_end"] = time.time()

    c0 = _cpu()
    t_call = time.time()
    thread = threading.Thread(target=work)
    thread.start()
    first = last = None
    pieces = []
    for delta in streamer:
        if not delta:
            continue
        last = time.time()
        if first is None:
            first = last
        pieces.append(delta)
    thread.join()
    new = out["ids"][0, inputs["input_ids"].shape[1] :].tolist()
    return {
        "t_call": t_call,
        "t_first": first,
        "t_last": last,
        "t_end": out["t_end"],
        "tokens": len(new),
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "text": "".join(pieces),
        "cpu": _cpu() - c0,
    }


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "bare":
        bare(sys.argv[2])
    else:
        raise SystemExit(__doc__)
else:
    install_probes()
