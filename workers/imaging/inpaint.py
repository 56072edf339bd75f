"""Inpainting masks as A1111 uses them: what is redrawn, where it goes back, what stays exact.

A mask is a grayscale image, white where the picture is redrawn ("Inpaint masked"; inverted it
is "Inpaint not masked"). :func:`plan_inpaint` turns an init image and a mask into an
:class:`InpaintPlan` and :func:`composite` puts a generated image back, as A1111's
``StableDiffusionProcessingImg2Img`` does for ordinary (non-inpainting) checkpoints:

- **Whole picture** (default): the init image and the mask are resized to the generation size
  (A1111's "Just resize": Lanczos for the image, bilinear for the mask), the whole image is
  redrawn by img2img while the unmasked latents are held to the original's, then the result is
  composited over the original through the blurred mask.
- **Only masked** (``only_masked``, A1111's "inpaint_full_res"): the masked region's bounding box
  plus ``padding`` pixels, widened to the generation size's aspect ratio, is cut out of the init
  image, redrawn at the generation size, scaled back and pasted in; the result keeps the init
  image's own size.

Either way a pixel where the blurred mask is 0 (further than about ``3 x blur`` px from any
painted pixel) is the original's exactly, byte for byte: the model never touches it.

Pure code: Pillow and numpy only (no torch, no Django).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

MAX_BLUR = 64
MAX_PADDING = 256


class MaskError(ValueError):
    """A mask that cannot be used with its init image; the message says why, as shown."""


@dataclass(frozen=True)
class InpaintSettings:
    """A1111's inpaint controls: the mask, "Mask blur", "Mask mode", "Inpaint area" and "Only
    masked padding, pixels"."""

    mask: PILImage
    blur: int = 4
    invert: bool = False
    only_masked: bool = False
    padding: int = 32

    def __post_init__(self) -> None:
        if not hasattr(self.mask, "convert"):
            raise MaskError("the mask must be an image")
        if not (0 <= self.blur <= MAX_BLUR):
            raise MaskError(f"mask blur must be 0..{MAX_BLUR}")
        if not (0 <= self.padding <= MAX_PADDING):
            raise MaskError(f"masked padding must be 0..{MAX_PADDING}")

    def infotext(self) -> dict[str, object]:
        """The image's A1111 infotext entries for these settings."""
        params: dict[str, object] = {"Mask blur": self.blur}
        if self.invert:
            params["Mask mode"] = "Inpaint not masked"
        if self.only_masked:
            params["Inpaint area"] = "Only masked"
            params["Masked area padding"] = self.padding
        return params


@dataclass(frozen=True)
class InpaintPlan:
    """What the model redraws (``image`` and ``mask``, at the generation size) and how the
    result goes back onto ``original`` (``overlay``: the blurred mask at the original's size,
    0 = keep exactly; ``box``: where an "only masked" crop is pasted)."""

    original: PILImage
    image: PILImage
    mask: PILImage
    overlay: PILImage
    box: tuple[int, int, int, int] | None


def mask_gray(mask: PILImage, *, invert: bool = False) -> PILImage:
    """The mask as 8-bit grayscale, white = redraw. A transparent pixel counts as black (keep),
    so a PNG of white strokes on a transparent layer works as drawn."""
    from PIL import Image, ImageOps

    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        gray = Image.alpha_composite(black, rgba).convert("L")
    else:
        gray = mask.convert("L")
    return ImageOps.invert(gray) if invert else gray


def check_proportions(mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """MaskError unless the mask has the init image's proportions (within 1 %): a mask is
    stretched onto its image, so a mask drawn for another picture would land elsewhere."""
    (mw, mh), (iw, ih) = mask_size, image_size
    if abs(mw / mh - iw / ih) > 0.01 * (iw / ih):
        raise MaskError(
            f"the mask is {mw}x{mh} and the init image {iw}x{ih}: draw the mask on this image "
            "(or export it with the image's proportions)"
        )


def crop_region(mask: PILImage, padding: int) -> tuple[int, int, int, int] | None:
    """The painted pixels' bounding box grown by ``padding`` and clipped to the image, as
    (left, top, right, bottom); None when nothing is painted."""
    box = mask.point(lambda v: 255 if v > 0 else 0).getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    w, h = mask.size
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, w), min(y2 + padding, h)


def expand_to_ratio(
    box: tuple[int, int, int, int], width: int, height: int, image_w: int, image_h: int
) -> tuple[int, int, int, int]:
    """``box`` widened (or heightened) about its centre to ``width:height``, kept inside the
    image and shifted back in where it would cross an edge (A1111's ``expand_crop_region``)."""
    x1, y1, x2, y2 = box
    ratio_crop = (x2 - x1) / (y2 - y1)
    ratio = width / height
    if ratio_crop > ratio:  # too wide: grow the height
        want = min(round((x2 - x1) / ratio), image_h)
        y1, y2 = _grow(y1, y2, want, image_h)
    else:  # too tall: grow the width
        want = min(round((y2 - y1) * ratio), image_w)
        x1, x2 = _grow(x1, x2, want, image_w)
    return x1, y1, x2, y2


def _grow(lo: int, hi: int, want: int, limit: int) -> tuple[int, int]:
    """The span [lo, hi) grown to ``want`` about its middle, moved inside [0, limit)."""
    extra = want - (hi - lo)
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > limit:
        lo, hi = max(lo - (hi - limit), 0), limit
    return lo, hi


def plan_inpaint(init: PILImage, settings: InpaintSettings, size: tuple[int, int]) -> InpaintPlan:
    """The plan for redrawing ``init`` under ``settings.mask`` at the generation ``size``.

    MaskError when the mask's proportions differ from the image's or nothing is painted.
    """
    from PIL import Image, ImageFilter

    check_proportions(settings.mask.size, init.size)
    image = init.convert("RGB")
    original = image if settings.only_masked else _resized(image, size, Image.Resampling.LANCZOS)
    mask = _resized(
        mask_gray(settings.mask, invert=settings.invert), original.size, Image.Resampling.BILINEAR
    )
    if mask.getbbox() is None:
        raise MaskError("the mask is empty: paint the part of the image to redraw")
    overlay = mask.filter(ImageFilter.GaussianBlur(settings.blur)) if settings.blur else mask
    if not settings.only_masked:
        return InpaintPlan(original, original, overlay, overlay, None)
    box = crop_region(overlay, settings.padding)
    assert box is not None  # the mask is not empty, and blurring only widens it
    box = expand_to_ratio(box, size[0], size[1], *original.size)
    work = _resized(original.crop(box), size, Image.Resampling.LANCZOS)
    work_mask = _resized(overlay.crop(box), size, Image.Resampling.BILINEAR)
    return InpaintPlan(original, work, work_mask, overlay, box)


def _resized(image: PILImage, size: tuple[int, int], method) -> PILImage:
    return image if image.size == size else image.resize(size, method)


def composite(plan: InpaintPlan, generated: PILImage) -> PILImage:
    """The generated image put back on the original: through the blurred mask, so unmasked
    pixels are the original's exactly; an "only masked" crop is first scaled back into place."""
    from PIL import Image

    result = generated.convert("RGB")
    if plan.box is not None:
        x1, y1, x2, y2 = plan.box
        pasted = plan.original.copy()
        pasted.paste(result.resize((x2 - x1, y2 - y1), Image.Resampling.LANCZOS), (x1, y1))
        result = pasted
    elif result.size != plan.original.size:  # pragma: no cover - the pipeline keeps the size
        result = result.resize(plan.original.size, Image.Resampling.LANCZOS)
    return Image.composite(result, plan.original, plan.overlay)
