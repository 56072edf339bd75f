"""A1111's X/Y/Z plot: vary up to three settings across axes, one image per combination, and
draw them into one labelled grid.

- :func:`parse_axis`: an axis from its field and the values as a user types them in A1111
  (comma-separated, CSV quoting; ``1-5``, ``1-9 (+2)`` and ``1-10 [4]`` ranges for numbers).
- :func:`plan_cells`: every combination's settings (Z outermost, X innermost, as A1111 runs
  them), with the seeds fixed first: a random seed (-1) becomes one seed shared by every cell,
  and a -1 on a seed axis becomes a random seed of its own, as A1111 does unless "Keep -1".
- :func:`draw_grid`: the images in one grid, X values as column titles, Y values as row titles,
  one sub-grid per Z value side by side under its title. Images smaller than
  :data:`MIN_CELL_SIDE` are enlarged by a whole factor with nearest-neighbour sampling, so each
  cell is exactly its image, pixel for pixel, only bigger.
- :func:`grid_params`: what A1111 adds to the grid's infotext (``Script``, ``X Type``,
  ``X Values``, ...), so its "PNG info" restores the plot's settings.

The fields are ``seed``, ``steps``, ``cfg_scale``, ``sampler``, ``prompt_sr`` (Prompt S/R: the
first value is searched for in the prompt and the negative prompt, and each value replaces it;
the first cell keeps the prompt as it is) and ``lora_weight`` (the multiplier of one
``<lora:name:weight>`` tag of the prompt). Settings are plain dicts of the image job's
parameters (``prompt``, ``seed``, ``cfg_scale``, ...): nothing here knows the platform.
"""

from __future__ import annotations

import csv
import io
import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, product
from pathlib import Path
from typing import Any

__all__ = [
    "AXIS_FIELDS",
    "MAX_CELLS",
    "MIN_CELL_SIDE",
    "Axis",
    "Cell",
    "GridLayout",
    "XyzError",
    "cell_label",
    "draw_grid",
    "grid_params",
    "parse_axis",
    "plan_cells",
]

MAX_CELLS = 100  # images in one plot (the budget may allow fewer)
MAX_SEED = 2**32 - 1
MIN_CELL_SIDE = 128  # smaller images are enlarged in the grid (whole factors, nearest neighbour)
AXIS_NAMES = ("X", "Y", "Z")


@dataclass(frozen=True)
class _FieldSpec:
    label: str  # A1111's axis label ("CFG Scale"), written into the grid's infotext
    kind: type | None  # int, float or str (None: text kept as typed, prompt S/R)
    low: float | None = None
    high: float | None = None
    add_label: bool = True  # A1111's format_value_add_label ("Seed: 1") or the bare value


AXIS_FIELDS: dict[str, _FieldSpec] = {
    "seed": _FieldSpec("Seed", int, -1, MAX_SEED),
    "steps": _FieldSpec("Steps", int, 1, 150),
    "cfg_scale": _FieldSpec("CFG Scale", float, 0, 30),
    "sampler": _FieldSpec("Sampler", str, add_label=False),
    "prompt_sr": _FieldSpec("Prompt S/R", None, add_label=False),
    "lora_weight": _FieldSpec("LoRA weight", float, -10, 10),
}

# A1111's scripts/xyz_grid.py range syntax.
_RE_RANGE = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*")
_RE_RANGE_FLOAT = re.compile(
    r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\(([+-]\d+(?:.\d*)?)\s*\))?\s*"
)
_RE_RANGE_COUNT = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\[(\d+)\s*\])?\s*")
_RE_RANGE_COUNT_FLOAT = re.compile(
    r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\[(\d+(?:.\d*)?)\s*\])?\s*"
)
_RE_LORA = r"<(?:lora|lyco):{name}(?::[^>]*)?>"


class XyzError(ValueError):
    """An axis that cannot be plotted; the message names the axis and the value."""


@dataclass(frozen=True)
class Axis:
    """One axis: the field it varies, its values (typed), and the text they were read from."""

    field: str
    values: tuple[Any, ...]
    text: str
    lora: str = ""  # lora_weight: the LoRA whose tag it changes

    @property
    def label(self) -> str:
        """A1111's name for the axis type ("CFG Scale", "Prompt S/R", ...)."""
        spec = AXIS_FIELDS[self.field]
        return f"{self.lora} weight" if self.field == "lora_weight" and self.lora else spec.label


@dataclass(frozen=True)
class Cell:
    """One combination: its place in the grid, the values it takes, and its settings."""

    coords: tuple[int, int, int]  # (x, y, z) indexes; 0 where the plot has no such axis
    values: tuple[Any, ...]  # the value of each axis, in axis order
    settings: dict[str, Any]


# ------------------------------------------------------------------------------------ parsing


def _split(text: str) -> list[str]:
    """A1111's csv_string_to_list_strip: CSV fields, stripped, empty ones dropped."""
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [item.strip() for item in chain.from_iterable(rows) if item.strip()]


def _expand_ints(items: list[str]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        m, mc = _RE_RANGE.fullmatch(item), _RE_RANGE_COUNT.fullmatch(item)
        if m is not None:
            start, end = int(m.group(1).replace(" ", "")), int(m.group(2).replace(" ", ""))
            step = int(m.group(3)) if m.group(3) is not None else 1
            out += list(range(start, end + 1, step)) if step else []
        elif mc is not None:
            start, end = int(mc.group(1).replace(" ", "")), int(mc.group(2).replace(" ", ""))
            out += [int(v) for v in _linspace(start, end, int(mc.group(3) or 1))]
        else:
            out.append(item)
    return out


def _expand_floats(items: list[str]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        m, mc = _RE_RANGE_FLOAT.fullmatch(item), _RE_RANGE_COUNT_FLOAT.fullmatch(item)
        if m is not None:
            start, end = float(m.group(1).replace(" ", "")), float(m.group(2).replace(" ", ""))
            step = float(m.group(3)) if m.group(3) is not None else 1.0
            out += _arange(start, end, step)
        elif mc is not None:
            start, end = float(mc.group(1).replace(" ", "")), float(mc.group(2).replace(" ", ""))
            out += _linspace(start, end, int(float(mc.group(3) or 1)))
        else:
            out.append(item)
    return out


def _linspace(start: float, end: float, num: int) -> list[float]:
    if num <= 1:
        return [float(start)] if num == 1 else []
    return [start + (end - start) * i / (num - 1) for i in range(num)]


def _arange(start: float, end: float, step: float) -> list[float]:
    """numpy's arange(start, end + step, step), as A1111 expands "1-2 (+0.5)"; rounded so
    0.1 steps read 0.3, not 0.30000000000000004."""
    if step == 0 or (end - start) * step < 0:
        return []
    count = math.ceil(round((end + step - start) / step, 9))
    return [round(start + i * step, 8) for i in range(max(count, 0))]


def _typed(field: str, raw: Any) -> Any:
    spec = AXIS_FIELDS[field]
    if spec.kind is None or spec.kind is str:
        return str(raw)
    try:
        value = spec.kind(raw)
    except (TypeError, ValueError):
        kind = "a whole number" if spec.kind is int else "a number"
        raise XyzError(f"{spec.label}: {raw!r} is not {kind}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise XyzError(f"{spec.label}: {raw!r} is not a number")
    if spec.low is not None and spec.high is not None and not spec.low <= value <= spec.high:
        raise XyzError(f"{spec.label}: {raw} is outside {spec.low:g}..{spec.high:g}")
    return value


def parse_axis(field: str, text: str, *, lora: str = "") -> Axis:
    """An axis of ``field`` from its values as typed in A1111 (see the module doc).

    Raises :class:`XyzError` for an unknown field, no values, a value of the wrong type or out
    of range, or a Prompt S/R axis with only its search string.
    """
    if field not in AXIS_FIELDS:
        raise XyzError(f"unknown axis {field!r}: choose one of {', '.join(AXIS_FIELDS)}")
    spec = AXIS_FIELDS[field]
    items = _split(str(text))
    if spec.kind is int:
        items = _expand_ints(items)
    elif spec.kind is float:
        items = _expand_floats(items)
    if not items:
        raise XyzError(f"{spec.label}: no values")
    if len(items) > MAX_CELLS:
        raise XyzError(f"{spec.label}: {len(items)} values; at most {MAX_CELLS}")
    values = tuple(_typed(field, item) for item in items)
    if field == "prompt_sr" and len(values) < 2:
        raise XyzError(
            "Prompt S/R: give the text to search for first, then what replaces it "
            "(e.g. 'cat, dog, bird')"
        )
    return Axis(field=field, values=values, text=str(text), lora=lora.strip())


# ------------------------------------------------------------------------------------ cells


def _apply(settings: dict[str, Any], axis: Axis, value: Any) -> None:
    """Set one axis's value on a cell's settings, as A1111's axis options apply them."""
    if axis.field in ("seed", "steps", "cfg_scale", "sampler"):
        settings[axis.field] = value
    elif axis.field == "prompt_sr":
        search = axis.values[0]
        for key in ("prompt", "negative_prompt"):
            settings[key] = str(settings.get(key, "")).replace(search, value)
    elif axis.field == "lora_weight":
        pattern = re.compile(_RE_LORA.format(name=re.escape(axis.lora)), re.IGNORECASE)
        for key in ("prompt", "negative_prompt"):
            settings[key] = pattern.sub(f"<lora:{axis.lora}:{value:g}>", settings.get(key, ""))


def check_axes(settings: Mapping[str, Any], axes: Sequence[Axis]) -> None:
    """Refuse axes the settings cannot take: at most three axes; a Prompt S/R search string
    that is in neither prompt (A1111's message); a LoRA weight for a LoRA the prompt does not
    use; more than :data:`MAX_CELLS` combinations."""
    if not 1 <= len(axes) <= len(AXIS_NAMES):
        raise XyzError("an X/Y/Z plot has one to three axes")
    text = f"{settings.get('prompt', '')}\n{settings.get('negative_prompt', '')}"
    for name, axis in zip(AXIS_NAMES, axes, strict=False):
        if axis.field == "prompt_sr" and axis.values[0] not in text:
            raise XyzError(
                f"{name} axis: Prompt S/R did not find {axis.values[0]} in prompt or negative prompt."
            )
        if axis.field == "lora_weight":
            if not axis.lora:
                raise XyzError(f"{name} axis: name the LoRA whose weight it varies")
            if not re.search(_RE_LORA.format(name=re.escape(axis.lora)), text, re.IGNORECASE):
                raise XyzError(f"{name} axis: the prompt has no <lora:{axis.lora}:...> tag")
    cells = math.prod(len(a.values) for a in axes)
    if cells > MAX_CELLS:
        raise XyzError(f"{cells} combinations; an X/Y/Z plot makes at most {MAX_CELLS} images")


def fix_seeds(
    settings: Mapping[str, Any], axes: Sequence[Axis], pick: Callable[[], int] | None = None
) -> tuple[dict[str, Any], list[Axis]]:
    """A1111's fixed seeds: a random seed (-1) is picked once for the whole plot, and each -1
    on a seed axis gets a random seed of its own, so every cell is reproducible."""
    pick = pick or (lambda: secrets.randbelow(MAX_SEED))
    fixed = dict(settings)
    if int(fixed.get("seed", -1)) == -1:
        fixed["seed"] = pick()
    out = []
    for axis in axes:
        if axis.field == "seed" and -1 in axis.values:
            values = tuple(pick() if v == -1 else v for v in axis.values)
            axis = Axis(field=axis.field, values=values, text=axis.text, lora=axis.lora)
        out.append(axis)
    return fixed, out


def plan_cells(settings: Mapping[str, Any], axes: Sequence[Axis]) -> list[Cell]:
    """Every combination's settings, Z outermost and X innermost (A1111's order). Call
    :func:`check_axes` and :func:`fix_seeds` first."""
    ranges = [range(len(a.values)) for a in axes]
    cells = []
    for index in product(*reversed(ranges)):  # the last axis outermost
        index = tuple(reversed(index))
        cell_settings = dict(settings)
        values = tuple(axis.values[i] for axis, i in zip(axes, index, strict=True))
        for axis, value in zip(axes, values, strict=True):
            _apply(cell_settings, axis, value)
        padded = (*index, 0, 0)
        coords = (padded[0], padded[1], padded[2])
        cells.append(Cell(coords=coords, values=values, settings=cell_settings))
    return cells


def cell_label(axis: Axis, value: Any) -> str:
    """A value's title in the grid, as A1111 writes it ("Seed: 1", "CFG Scale: 7.0", "Euler")."""
    if isinstance(value, float):
        value = round(value, 8)
    return f"{axis.label}: {value}" if AXIS_FIELDS[axis.field].add_label else str(value)


def grid_params(axes: Sequence[Axis]) -> dict[str, str]:
    """What A1111's X/Y/Z script adds to the grid's infotext: the script, each axis's type and
    values as typed, and a seed axis's fixed seeds."""
    params = {"Script": "X/Y/Z plot"}
    for name, axis in zip(AXIS_NAMES, axes, strict=False):
        params[f"{name} Type"] = axis.label
        params[f"{name} Values"] = axis.text
        if axis.field == "seed":
            params[f"Fixed {name} Values"] = ", ".join(str(v) for v in axis.values)
    return params


# ------------------------------------------------------------------------------------ grid

# Fonts with Latin and CJK glyphs first (labels may be Chinese prompts), then Latin only.
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
_BACKGROUND = (255, 255, 255)
_INK = (0, 0, 0)


@dataclass(frozen=True)
class GridLayout:
    """Where each cell is in the grid image: ``boxes[i]`` is the (left, top, right, bottom) of
    the i-th image given to :func:`draw_grid`; ``zoom`` is the whole factor it was enlarged by."""

    boxes: tuple[tuple[int, int, int, int], ...]
    zoom: int


def _font(size: int) -> Any:
    from PIL import ImageFont

    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _wrap(draw: Any, text: str, font: Any, width: int) -> list[str]:
    """Lines of ``text`` no wider than ``width`` px: broken at spaces, and inside a word (or a
    Chinese phrase, which has none) that is wider on its own."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for token in re.findall(r"\S+\s*|\s+", paragraph):
            if line and draw.textlength((line + token).rstrip(), font=font) > width:
                lines.append(line.rstrip())
                line = ""
            line += token
            while len(line) > 1 and draw.textlength(line.rstrip(), font=font) > width:
                cut = _fit(draw, line, font, width)
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line.rstrip())
    return lines


def _fit(draw: Any, text: str, font: Any, width: int) -> int:
    """How many leading characters of ``text`` fit in ``width`` px (at least one)."""
    n = 1
    while n < len(text) and draw.textlength(text[: n + 1], font=font) <= width:
        n += 1
    return n


def _text_block(draw: Any, texts: Sequence[str], font: Any, width: int) -> int:
    line_height = font.size + font.size // 3
    return max(len(_wrap(draw, t, font, width)) for t in texts) * line_height if texts else 0


def _draw_centered(draw: Any, box: tuple[int, int, int, int], text: str, font: Any) -> None:
    left, top, right, bottom = box
    lines = _wrap(draw, text, font, right - left)
    line_height = font.size + font.size // 3
    y = top + (bottom - top - line_height * len(lines)) // 2
    for line in lines:
        width = draw.textlength(line, font=font)
        draw.text((left + (right - left - width) / 2, y), line, font=font, fill=_INK)
        y += line_height


def draw_grid(
    images: Sequence[Any],
    axes: Sequence[Axis],
    cells: Sequence[Cell],
) -> tuple[Any, GridLayout]:
    """One labelled grid of ``images`` (one per cell, in ``cells``' order); see the module doc.

    Returns the grid (RGB) and where each image went.
    """
    from PIL import Image, ImageDraw

    if len(images) != len(cells) or not images:
        raise XyzError("one image per cell is needed to draw the grid")
    cw, ch = images[0].size
    zoom = max(1, math.ceil(MIN_CELL_SIDE / min(cw, ch)))
    cw, ch = cw * zoom, ch * zoom
    counts = [len(a.values) for a in axes] + [1] * (3 - len(axes))
    nx, ny, nz = counts
    font = _font(max(12, (cw + ch) // 25))
    pad = max(4, font.size // 2)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    x_titles = [cell_label(axes[0], v) for v in axes[0].values]
    y_titles = [cell_label(axes[1], v) for v in axes[1].values] if len(axes) > 1 else []
    z_titles = [cell_label(axes[2], v) for v in axes[2].values] if len(axes) > 2 else []
    left = (
        min(
            max(math.ceil(scratch.textlength(t, font=font)) for t in y_titles) + 1,
            max(cw, 4 * font.size),
        )
        + 2 * pad
        if y_titles
        else 0
    )
    top = _text_block(scratch, x_titles, font, cw - pad) + 2 * pad
    z_top = _text_block(scratch, z_titles, font, left + nx * cw - pad) + 2 * pad if z_titles else 0
    sub_w, sub_h = left + nx * cw, z_top + top + ny * ch
    gap = 2 * pad if nz > 1 else 0
    grid = Image.new("RGB", (nz * sub_w + (nz - 1) * gap, sub_h), _BACKGROUND)
    draw = ImageDraw.Draw(grid)
    boxes = []
    for image, cell in zip(images, cells, strict=True):
        ix, iy, iz = cell.coords
        x0, y0 = iz * (sub_w + gap) + left + ix * cw, z_top + top + iy * ch
        shown = image.convert("RGB")
        if zoom > 1:
            shown = shown.resize((cw, ch), Image.Resampling.NEAREST)
        grid.paste(shown, (x0, y0))
        boxes.append((x0, y0, x0 + cw, y0 + ch))
    for iz in range(nz):
        origin = iz * (sub_w + gap)
        if z_titles:
            _draw_centered(draw, (origin, 0, origin + sub_w, z_top), z_titles[iz], font)
        for ix, title in enumerate(x_titles):
            x0 = origin + left + ix * cw
            _draw_centered(
                draw, (x0 + pad // 2, z_top, x0 + cw - pad // 2, z_top + top), title, font
            )
        for iy, title in enumerate(y_titles):
            y0 = z_top + top + iy * ch
            _draw_centered(draw, (origin + pad, y0, origin + left - pad, y0 + ch), title, font)
    return grid, GridLayout(boxes=tuple(boxes), zoom=zoom)
