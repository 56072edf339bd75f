"""Subprocess side of bench/api.py (no Django): the in-process baseline.

    python bench/_api_child.py inproc MODEL_DIR

Loads the model folder once through the platform's own pure generation code
(workers.ml.textgen, the code a textgen job runs, with its warm model cache), then for each JSON
line on stdin (``{"messages", "max_new_tokens", "seed", "stop"}``) calls ``generate_text`` with
the settings the OpenAI-compatible endpoint gives a job for temperature 0 (greedy, top_p 1,
top_k off, no repetition penalty) and answers one JSON line: wall-clock stamps
(``time.time()``) of the call, the first and the last streamed text and the return, the new
tokens, the prompt tokens and the text. Nothing of the web stack, the database or the job
engine is involved: what a script calling the model directly would see.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))


def settings_for(req: dict):
    from workers.ml.textgen import GenerationSettings

    # What apps/api/openai_compat/chat.py puts into the job for temperature=0 and a seed.
    return GenerationSettings(
        max_new_tokens=req["max_new_tokens"],
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        repetition_penalty=1.0,
        seed=req["seed"],
    )


def inproc(model_dir: str) -> None:
    t0 = time.time()
    from workers.ml.textgen import generate_text, load_for_generation

    load_for_generation(model_dir)  # into the process's warm cache, as a worker keeps it
    print(json.dumps({"ready": True, "load_s": time.time() - t0}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        stamps: list[float] = []
        stamp = stamps.append
        t_call = time.time()
        result = generate_text(
            model_dir,
            req["messages"][-1]["content"],
            settings_for(req),
            messages=req["messages"],
            stop=req.get("stop") or (),
            on_text=lambda delta, stamp=stamp: stamp(time.time()),
        )
        t_end = time.time()
        print(
            json.dumps(
                {
                    "t_call": t_call,
                    "t_first": stamps[0] if stamps else None,
                    "t_last": stamps[-1] if stamps else None,
                    "t_end": t_end,
                    "tokens": result.tokens,
                    "prompt_tokens": result.prompt_tokens,
                    "text": result.text,
                    "loaded": result.loaded,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "inproc":
        inproc(sys.argv[2])
    else:
        raise SystemExit(__doc__)
