"""PNG compression level: bytes against encoding time, on photographs, at the sizes users make.

    .venv/bin/python bench/png.py [--sizes 512,768,1024] [--reps 5]

The platform writes every generated image as a PNG with its infotext (workers/imaging/infotext.py
write_png, level PNG_COMPRESS_LEVEL); A1111 saves at Pillow's default, zlib level 6. Generated
images of real models are photograph-like, so the inputs are the two photographs that ship inside
scikit-learn (sklearn/datasets/images: china.jpg, flower.jpg), cropped square and resized with
Lanczos to each size. For each zlib level 0-9 it prints the mean encoding time (write_png to
memory: the same call the worker makes, infotext chunks included) and the mean file size, each
against level 6 measured in the same run (levels are interleaved per repetition, so load drift
falls on all alike). The random tiny test model's images are noise and would favour no
compression: they are not used here.

The choice: the fastest level whose files are at most 2 % larger than level 6's at every size.
The last line printed is one RESULT line with the chosen level and its figures beside the goal.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from workers.imaging.infotext import PNG_COMPRESS_LEVEL, write_png  # noqa: E402

BASELINE = 6  # Pillow's default, A1111's
MAX_GROWTH = 0.02  # a level may make files at most 2 % larger than level 6
INFOTEXT = (
    "a watercolor painting of a red fox in the snow\nNegative prompt: blurry, low quality\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1000, Size: 512x512, Model: tiny-sd"
)


def photographs(size: int) -> list:
    import sklearn
    from PIL import Image

    folder = Path(sklearn.__file__).parent / "datasets" / "images"
    out = []
    for name in ("china.jpg", "flower.jpg"):
        with Image.open(folder / name) as img:
            rgb = img.convert("RGB")
        side = min(rgb.size)
        out.append(rgb.crop((0, 0, side, side)).resize((size, size), Image.Resampling.LANCZOS))
    return out


def measure(sizes: list[int], reps: int) -> dict[int, dict[int, tuple[float, float]]]:
    """{size: {level: (seconds per image, bytes per image)}}"""
    results: dict[int, dict[int, tuple[float, float]]] = {}
    for size in sizes:
        images = photographs(size)
        times: dict[int, list[float]] = {lvl: [] for lvl in range(10)}
        sizes_b: dict[int, list[int]] = {lvl: [] for lvl in range(10)}
        for _ in range(reps):
            for lvl in range(10):
                for image in images:
                    buffer = io.BytesIO()
                    t = time.perf_counter()
                    write_png(image, buffer, INFOTEXT, compress_level=lvl)
                    times[lvl].append(time.perf_counter() - t)
                    sizes_b[lvl].append(len(buffer.getvalue()))
        results[size] = {
            lvl: (sum(times[lvl]) / len(times[lvl]), sum(sizes_b[lvl]) / len(sizes_b[lvl]))
            for lvl in range(10)
        }
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sizes",
        type=lambda v: [int(x) for x in v.split(",") if x.strip()],
        default=[512, 768, 1024],
    )
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    results = measure(args.sizes, args.reps)
    print(
        f"PNG levels on photographs (sklearn's china.jpg, flower.jpg), {args.reps} reps, "
        f"levels interleaved; cpus={os.cpu_count()}"
    )
    for size, by_level in results.items():
        base_t, base_b = by_level[BASELINE]
        print(f"  {size}x{size} px:")
        for lvl, (t, b) in by_level.items():
            mark = " (A1111 / Pillow default)" if lvl == BASELINE else ""
            mark += " (the platform's)" if lvl == PNG_COMPRESS_LEVEL else ""
            print(
                f"    level {lvl}: {1000 * t:7.1f} ms ({t / base_t:5.2f}x level 6's time), "
                f"{b / 1024:7.0f} KiB ({b / base_b - 1:+6.1%} bytes){mark}"
            )
    eligible = [
        lvl
        for lvl in range(10)
        if all(r[lvl][1] <= r[BASELINE][1] * (1 + MAX_GROWTH) for r in results.values())
    ]
    best = min(eligible, key=lambda lvl: sum(r[lvl][0] for r in results.values()))
    chosen = results[max(args.sizes)]
    t, b = chosen[PNG_COMPRESS_LEVEL]
    bt, bb = chosen[BASELINE]
    print(
        f"RESULT png fastest level within {MAX_GROWTH:.0%} of level 6's bytes = {best} "
        f"(platform uses {PNG_COMPRESS_LEVEL}: {'same' if best == PNG_COMPRESS_LEVEL else 'DIFFERENT'}) "
        f"| at {max(args.sizes)} px level {PNG_COMPRESS_LEVEL} takes {t / bt:.2f}x level 6's "
        f"time for {b / bb - 1:+.1%} bytes ({1000 * t:.0f} vs {1000 * bt:.0f} ms, "
        f"{b / 1024:.0f} vs {bb / 1024:.0f} KiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
