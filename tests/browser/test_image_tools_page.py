"""The image page's X/Y/Z plot and inpainting in a real browser, on the digits demo model, against
real web and worker processes: a 2x2 plot whose grid cells are the single images the form makes
with the same settings, then a mask painted with the mouse on the inpaint canvas that redraws only
the painted pixels. Screenshots of both sections, at desktop and phone widths, go to the test's
log folder (printed on failure)."""

from __future__ import annotations

import io
import math
import re
from urllib.parse import urljoin

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from PIL import Image, ImageChops

from apps.images.models import InpaintMask
from apps.jobs.models import Job
from apps.models.models import BaseModel
from tests.browser.test_live_job_page import browser  # noqa: F401 - the fixture
from workers.imaging.xyz import MIN_CELL_SIDE, draw_grid, parse_axis, plan_cells

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    # The digits demo model trains on first use (minutes on 2 CPUs, once, into .pytest-models);
    # afterwards the test takes under a minute (about 40 s on 2 busy cores).
    pytest.mark.timeout(1500),
]

SIZE = 32  # the digits demo model's native size
STEPS = 6  # few steps: the checks compare code paths, not picture quality
X_SEEDS, Y_CFGS = "1, 2", "3, 7"
PROMPT = "a handwritten digit 7"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# The inpaint mask, painted as rows of brush strokes over these image pixels (inclusive), with
# the page's default brush (12 screen px) and mask blur 1.
PAINTED = (8, 16, 23, 27)  # left, top, right, bottom: the lower half, where a 7 and a 1 differ
MASK_BLUR = 1
# A pixel this far from the painted box is outside the blurred mask: the brush's round edge
# reaches under a pixel past its stroke (antialiased), and a blur of r reaches about 3r further
# (workers/imaging/inpaint.py; tests/imaging/test_inpaint.py checks the same margin).
MARGIN = 1 + 3 * MASK_BLUR
# The redrawn box must differ from the init image by more than this mean |difference| (8-bit
# levels, over all pixels and channels of the box). A redraw of the digit's lower half at
# denoising 1 moves it by tens of levels; an untouched box would be 0.
MIN_CHANGE = 8.0


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("ATELIER_DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")


def test_a_member_plots_a_grid_of_single_images_and_inpaints_only_the_painted_pixels(
    demo,
    processes,
    browser,  # noqa: F811
):
    base = processes.web()
    processes.worker()
    page = browser.new_page(viewport=DESKTOP)
    page.set_default_timeout(90000)
    shots = processes.log_dir
    try:
        open_image_page(page, base)
        singles = plot_and_compare(page, shots)
        inpaint_job = paint_and_inpaint(page, shots, init=singles[-1])
    except Exception as exc:
        shot = shots / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(
            f"{exc}\nscreenshots: {shots}\nworker log:\n{processes.log('worker')[-3000:]}"
            f"\nweb log:\n{processes.log('web')[-2000:]}"
        ) from exc
    assert Job.objects.filter(kind="image.xyz", state="succeeded").count() == 1
    assert Job.objects.filter(kind="image.generate", state="succeeded").count() == 5
    assert inpaint_job.created_by.username == "member"


def open_image_page(page, base: str) -> None:
    page.goto(base + "/")
    page.fill("input[name=username]", "member")
    page.fill("input[name=password]", "demo-pass-123")
    page.click("button:has-text('Log in')")
    page.click("text=Demo project")
    page.click("nav >> text=Images")
    digits = BaseModel.objects.get(reference="digits-demo")
    page.select_option("#im-model_id", str(digits.pk))
    page.fill("#im-prompt", PROMPT)
    page.fill("#im-width", str(SIZE))
    page.fill("#im-height", str(SIZE))
    page.fill("#im-steps", str(STEPS))
    assert page.input_value("#im-batch_count") == "1" and page.input_value("#im-batch_size") == "1"
    assert not page.is_checked("#im-hires-on")


def plot_and_compare(page, shots) -> list[tuple[int, Image.Image]]:
    """Run the 2x2 plot from its section, make each cell as a single image with the Generate
    button, and check every grid cell is its single image (enlarged). Returns the singles."""
    page.click("#im-xyz > summary")
    assert page.input_value("#xyz-X-field") == "seed"
    page.fill("#xyz-X-values", X_SEEDS)
    page.select_option("#xyz-Y-field", "cfg_scale")
    page.fill("#xyz-Y-values", Y_CFGS)
    page.click("#xyz-run")
    # The first job of the run prepares the model (training it if .pytest-models lacks it).
    page.wait_for_selector("#xyz-grid:not([hidden])", timeout=1200000)
    page.wait_for_function(
        "() => { const i = document.getElementById('xyz-grid-img');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    assert "succeeded" in page.locator("#xyz-state").get_attribute("class")
    grid = fetch_image(page, page.get_attribute("#xyz-grid-img", "src"))
    screenshots(page, "#im-xyz", shots / "xyz")

    # The same cells, one Generate each: the form's settings with the cell's seed and CFG.
    axes = [parse_axis("seed", X_SEEDS), parse_axis("cfg_scale", Y_CFGS)]
    cells = plan_cells({"seed": 0, "cfg_scale": 0.0}, axes)
    singles = []
    for cell in cells:
        page.fill("#im-seed", str(cell.settings["seed"]))
        page.fill("#im-cfg_scale", str(cell.settings["cfg_scale"]))
        singles.append(generate(page))
    images = [image for _, image in singles]
    assert {image.size for image in images} == {(SIZE, SIZE)}

    # Where each cell sits: the worker's own layout code, given these singles.
    expected, layout = draw_grid(images, axes, cells)
    assert grid.size == expected.size
    assert layout.zoom == math.ceil(MIN_CELL_SIDE / SIZE)
    for (output_id, image), cell, box in zip(singles, cells, layout.boxes, strict=True):
        enlarged = image.resize((image.width * layout.zoom,) * 2, Image.Resampling.NEAREST)
        # Exact: on CPU the pipeline's arithmetic does not depend on the batch
        # (workers/imaging/pipeline/batch_invariance.py), and both are lossless PNGs.
        assert ImageChops.difference(grid.crop(box), enlarged).getbbox() is None, (
            f"cell {cell.values} differs from single image #{output_id}"
        )
    assert len({image.tobytes() for image in images}) == 4  # four different pictures
    return singles


def generate(page) -> tuple[int, Image.Image]:
    """Click Generate and wait for this run's image; its output id and pixels."""
    before = page.eval_on_selector_all(
        "#im-results a.im-result-link", "links => links.map(a => a.getAttribute('href'))"
    )
    page.click("#im-run")
    page.wait_for_function(
        "(before) => { const a = document.querySelector('#im-results a.im-result-link');"
        " return a && !before.includes(a.getAttribute('href')); }",
        arg=before,
    )
    assert page.locator("#im-results li").count() == 1
    href = page.get_attribute("#im-results a.im-result-link", "href")
    output_id = int(re.search(r"/gallery/(\d+)/$", href).group(1))
    return output_id, fetch_image(page, f"{href}image.png")


def fetch_image(page, url: str) -> Image.Image:
    """An image as the browser gets it (the page's session cookie), as RGB."""
    response = page.request.get(urljoin(page.url, url))
    assert response.ok, (url, response.status)
    return Image.open(io.BytesIO(response.body())).convert("RGB")


def paint_and_inpaint(page, shots, *, init: tuple[int, Image.Image]) -> Job:
    init_id, source = init
    page.fill("#im-prompt", "a handwritten digit 1")
    page.fill("#im-seed", "5")
    # The result's "img2img" button: the image becomes the init image, its section opens and
    # the mask canvas appears over it.
    page.locator("#im-results .im-use-init").click()
    assert page.input_value("#im-init_output_id") == str(init_id)
    page.wait_for_selector("#im-mask-stage:not([hidden])")
    page.fill("#im-denoising_strength", "1")
    page.fill("#im-mask_blur", str(MASK_BLUR))
    assert page.input_value("#im-mask-brush") == "12"

    # Painted where the image is on screen, as a person would: the canvas must lie exactly over
    # it. hover() waits for the section's smooth scroll to settle.
    page.locator("#im-mask-canvas").hover()
    box = page.locator("#im-mask-image").bounding_box()
    assert page.locator("#im-mask-canvas").bounding_box() == box
    scale = box["width"] / SIZE  # screen px per image px

    def at(x: float, y: float) -> tuple[float, float]:  # the centre of image pixel (x, y)
        return box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale

    left, top, right, bottom = PAINTED
    page.mouse.move(*at(left, top))
    page.mouse.down()
    for row in range(top, bottom + 1):  # a zigzag of rows, one image pixel apart
        ends = (left, right) if (row - top) % 2 == 0 else (right, left)
        page.mouse.move(*at(ends[0], row), steps=2)
        page.mouse.move(*at(ends[1], row), steps=8)
    page.mouse.up()
    screenshots(page, "#im-img2img", shots / "inpaint")

    _, result = generate(page)
    job = Job.objects.filter(kind="image.generate").latest("pk")
    assert job.params["init_output_id"] == init_id and job.params["mask_blur"] == MASK_BLUR

    # The mask the page uploaded is what the mouse painted: white over the box, black away.
    mask_row = InpaintMask.objects.get(pk=job.params["mask_id"])
    mask = np.asarray(Image.open(settings.MEDIA_ROOT / mask_row.file_path).convert("L"))
    assert mask.shape == (SIZE, SIZE)
    drawn = "\n".join(" ".join(f"{v:3d}" for v in row) for row in mask)
    assert (mask[top : bottom + 1, left : right + 1] == 255).all(), f"{box}\n{drawn}"
    assert not mask[outside(PAINTED, 1)].any(), drawn

    before = np.asarray(source, dtype=np.int16)
    after = np.asarray(result, dtype=np.int16)
    # Outside the mask and its blur: the init image's pixels exactly (both are lossless PNGs and
    # the job composites its redraw through the mask, so no tolerance is needed).
    assert (after[outside(PAINTED, MARGIN)] == before[outside(PAINTED, MARGIN)]).all()
    change = np.abs(after - before)[top : bottom + 1, left : right + 1].mean()
    assert change > MIN_CHANGE, f"the painted box changed by {change:.1f} levels on average"
    return job


def outside(box: tuple[int, int, int, int], margin: int) -> np.ndarray:
    """The pixels further than ``margin`` from the (inclusive) box."""
    keep = np.ones((SIZE, SIZE), dtype=bool)
    x1, y1, x2, y2 = box
    keep[max(y1 - margin, 0) : y2 + margin + 1, max(x1 - margin, 0) : x2 + margin + 1] = False
    return keep


def screenshots(page, selector: str, stem) -> None:
    """The element at desktop and phone widths (stem-1280.png, stem-390.png)."""
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.locator(selector).screenshot(path=f"{stem}-{viewport['width']}.png")
    page.set_viewport_size(DESKTOP)
