"""Subprocess side of bench/images.py (no Django): build the tiny SD pipeline, the bare script,
and the pure-level figures.

    python bench/_images_child.py build FOLDER
    python bench/_images_child.py bare SPEC.json OUT.json
    python bench/_images_child.py pure SPEC.json OUT.json

``bare`` is the team's script as plain diffusers: ``StableDiffusionPipeline.from_pretrained``,
the sampler's scheduler class set the way a script sets it, then for each image
``pipe(prompt, negative_prompt=..., generator=torch.Generator().manual_seed(seed), ...)`` and
``image.save(png)``. Nothing of the platform is imported, not even to time it.

``pure`` is the platform's own pure code in a plain process (``load_pipeline``,
``generate_images``, ``generate_batch``): no Django, no Celery, no database. It times 8 x
``generate_images`` against one ``generate_batch`` of the same 8 requests at the spec's ``size``
(bench/images.py passes its --batch-px), alternated ``reps`` times; with ``rate_size`` (the
warm-ratio size, when it differs) it also times each request once through ``generate_images`` at
that size, for the per-image split of the warm ratio.

Timing probes: the worker of bench/images.py imports this module through
ATELIER_JOB_KIND_MODULES=bench._images_child (it registers no job kind). When
ATELIER_BENCH_IMG_PROBE_DIR is set it subscribes to the product's timing points
(workers/common/timing.py; nothing is rebound): the pipeline's load / generate_images /
generate_batch, the image runner's pipeline and save_image, job claims, batch partners and the
JobReporter's flush / preview, and appends one JSON line per timed call (wall-clock stamps, the
calling thread's CPU time) to one file per process. Cost: microseconds per call.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

T_START = time.time()

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from bench._common import JsonlProbes, read_probes  # noqa: E402, F401 - read_probes: for the bench

# ---------------------------------------------------------------------------- worker probes

PROBE_ENV = "ATELIER_BENCH_IMG_PROBE_DIR"
_record = JsonlProbes(PROBE_ENV).record


# Timing point (workers/common/timing.py) -> (probe kind, its fields): what bench/images.py's
# breakdown reads.
PROBES = {
    "imaging.load_pipeline": ("load_pipeline", None),
    "imaging.generate_images": ("generate_images", lambda f: {"images": len(f["result"])}),
    "imaging.generate_batch": (
        "generate_batch",
        lambda f: {"images": sum(len(x) for x in f["result"]), "requests": len(f["result"])},
    ),
    "images.pipeline": ("pipeline", lambda f: {"loaded": f["result"][1]}),
    "images.record_image": ("record_image", None),
    "images.write_image": ("write_image", None),
    "tasks.complete": ("complete", lambda f: {"job": f["args"][0].job.pk}),
    "tasks.execute_job": ("execute_job", lambda f: {"job": f["args"][0], "value": f["result"]}),
    "jobs.claim": ("job_claim", lambda f: {"job": f["kwargs"].get("job_id")}),
    "reporter.flush": ("flush", None),
    "reporter.preview": ("preview", None),
    "tasks.claim_partners": ("claim_partners", lambda f: {"partners": len(f["result"])}),
}


_on_timed = None  # the subscriber, made once per process


def install_probes() -> None:
    global _on_timed
    if not os.environ.get(PROBE_ENV):
        return
    from bench._common import probe_subscriber
    from workers.common import timing

    if _on_timed is None:
        _on_timed = probe_subscriber(PROBES, _record, cpu=True)
        timing.subscribe(_on_timed)


def pixel_sha(image) -> str:
    """SHA-256 of the RGB pixels (not of the PNG file: metadata differs between the two sides)."""
    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


# The schedulers a plain script would set for these A1111 names (diffusers' own documentation's
# mapping; A1111 >= 1.9 runs "DPM++ 2M" with the Karras schedule when the schedule is Automatic).
BARE_SCHEDULERS = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DPM++ 2M": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
}


def build(folder: str) -> None:
    from workers.imaging.demo_model import build_tiny_pipeline

    build_tiny_pipeline(folder, seed=0)


def bare(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    t_imp = time.time()
    import diffusers
    import torch
    from diffusers import StableDiffusionPipeline

    t_loaded_libs = time.time()
    pipe = StableDiffusionPipeline.from_pretrained(
        spec["model_dir"], safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    cls_name, extra = BARE_SCHEDULERS[spec["sampler"]]
    pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)
    t_load = time.time()
    out_dir = Path(spec["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(prompt: str, seed: int, name: str):
        image = pipe(
            prompt,
            negative_prompt=spec["negative_prompt"],
            num_inference_steps=spec["steps"],
            guidance_scale=spec["cfg_scale"],
            width=spec["size"],
            height=spec["size"],
            generator=torch.Generator().manual_seed(seed),
        ).images[0]
        path = out_dir / name
        image.save(path)
        return image, path

    t0 = time.time()
    one(spec["warmup"]["prompt"], spec["warmup"]["seed"], "warmup.png")  # excluded from the rate
    t_first = time.time()
    cpu_first = time.process_time()
    images = []
    for i, req in enumerate(spec["requests"]):
        t, c = time.time(), time.thread_time()
        image, path = one(req["prompt"], req["seed"], f"{i}.png")
        images.append(
            {
                "prompt": req["prompt"],
                "seed": req["seed"],
                "seconds": time.time() - t,
                "cpu": time.thread_time() - c,
                "pixels": pixel_sha(image),
                "path": str(path),
            }
        )
    t_done = time.time()
    cpu_done = time.process_time()
    Path(out_path).write_text(
        json.dumps(
            {
                "t_child_start": T_START,
                "import_seconds": t_loaded_libs - t_imp,
                "load_seconds": t_load - t_loaded_libs,
                "first_image_seconds": t_first - t0,
                "t_first_done": t_first,
                "images": images,
                "images_seconds": t_done - t_first,
                "images_process_cpu": cpu_done - cpu_first,
                "torch_threads": torch.get_num_threads(),
                "scheduler": type(pipe.scheduler).__name__,
                "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
            }
        )
    )


def pure(spec_path: str, out_path: str) -> None:
    """The platform's pure functions: per-image rate of generate_images (at ``rate_size`` if
    given), and 8 compatible requests through 8 generate_images calls vs one generate_batch call
    (alternated) at ``size``."""
    spec = json.loads(Path(spec_path).read_text())
    import torch

    from workers.imaging.pipeline import (
        GenerationRequest,
        generate_batch,
        generate_images,
        load_pipeline,
    )

    t = time.time()
    pipe = load_pipeline(spec["model_dir"])
    load_seconds = time.time() - t

    def request(r: dict, size: int | None = None) -> GenerationRequest:
        return GenerationRequest(
            prompt=r["prompt"],
            negative_prompt=spec["negative_prompt"],
            sampler=spec["sampler"],
            steps=spec["steps"],
            cfg_scale=spec["cfg_scale"],
            seed=r["seed"],
            width=size or spec["size"],
            height=size or spec["size"],
        )

    rate = None
    if spec.get("rate_size"):
        rs = spec["rate_size"]
        generate_images(pipe, request(spec["warmup"], rs))  # warm-up, excluded
        rate = {"size": rs, "seconds": [], "cpu": []}
        for r in spec["requests"]:
            t, c = time.time(), time.thread_time()
            generate_images(pipe, request(r, rs))
            rate["seconds"].append(time.time() - t)
            rate["cpu"].append(time.thread_time() - c)

    reqs = [request(r) for r in spec["requests"]]
    generate_images(pipe, request(spec["warmup"]))  # warm-up, excluded
    generate_batch(pipe, reqs[:2])  # warm-up of the batched shapes, excluded
    seq_s, batch_s, seq_cpu, batch_cpu = [], [], [], []
    seq_pixels: list[str] = []
    batch_pixels: list[str] = []
    for _ in range(spec["reps"]):
        t, c = time.time(), time.thread_time()
        solo = [generate_images(pipe, r)[0] for r in reqs]
        seq_s.append(time.time() - t)
        seq_cpu.append(time.thread_time() - c)
        t, c = time.time(), time.thread_time()
        together = [g[0] for g in generate_batch(pipe, reqs)]
        batch_s.append(time.time() - t)
        batch_cpu.append(time.thread_time() - c)
        seq_pixels = [pixel_sha(g.image) for g in solo]
        batch_pixels = [pixel_sha(g.image) for g in together]
    Path(out_path).write_text(
        json.dumps(
            {
                "load_seconds": load_seconds,
                "size": spec["size"],
                "rate": rate,
                "n": len(reqs),
                "sequential_seconds": seq_s,
                "batch_seconds": batch_s,
                "sequential_cpu": seq_cpu,
                "batch_cpu": batch_cpu,
                "sequential_pixels": seq_pixels,
                "batch_pixels": batch_pixels,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def main() -> int:
    mode, *rest = sys.argv[1:]
    if mode == "build":
        build(*rest)
    elif mode == "bare":
        bare(*rest)
    elif mode == "pure":
        pure(*rest)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
else:  # imported by the worker as a job-kind module
    install_probes()
