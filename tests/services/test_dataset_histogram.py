"""The length histogram on a version's page: bars scaled to the tallest (not to the total rows,
which left them a quarter of their box), filling the box, with axis labels that can be read
(issue 19, item 3)."""

from __future__ import annotations

import re

import pytest

from apps.datasets import services
from apps.datasets.selectors import HISTOGRAM_PLOT_HEIGHT
from tests.browser.test_live_job_page import browser  # noqa: F401  (the shared Chromium fixture)
from tests.services.test_datasets import QA_ROWS, do_import, write_csv


def histogram(counts: list[int], width: int = 50) -> dict:
    bins = [
        {"min": i * width, "max": (i + 1) * width - 1, "count": c} for i, c in enumerate(counts)
    ]
    return {
        "rows": sum(counts),
        "length": {"unit": "chars", "min": 0, "max": 999, "histogram": bins},
    }


def rendered(client, user, version, counts: list[int]) -> str:
    services.version_set_stats(version=version, stats=histogram(counts))
    client.force_login(user)
    return client.get(version.get_absolute_url()).content.decode()


def bars(page: str) -> list[dict[str, float]]:
    """Each bar's count, top and height, as the SVG draws them (user units are pixels)."""
    found = re.findall(
        r'<rect class="ds-hist-bar"[^>]*\by="([\d.]+)"[^>]*\bheight="([\d.]+)"[^>]*'
        r'data-count="(\d+)"',
        page,
    )
    return [{"y": float(y), "height": float(h), "count": int(c)} for y, h, c in found]


def axis_labels(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<text class="ds-hist-label"[^>]*font-size="(\d+)"[^>]*>([^<]*)<', page)


@pytest.fixture
def version(project, people, tmp_path):
    v, _ = do_import(project, people["member"], write_csv(tmp_path / "qa.csv", QA_ROWS))
    return v


def test_the_tallest_bar_fills_the_box_and_the_others_are_scaled_to_it(client, people, version):
    drawn = bars(rendered(client, people["viewer"], version, [10, 40, 30, 20]))

    assert [b["count"] for b in drawn] == [10, 40, 30, 20]
    # 40 of 100 rows: scaled to the total rows it was 40% of the box; now it is all of it.
    assert [b["height"] for b in drawn] == [37.5, 150, 112.5, 75]
    assert max(b["height"] for b in drawn) == HISTOGRAM_PLOT_HEIGHT
    bottoms = {b["y"] + b["height"] for b in drawn}
    assert len(bottoms) == 1  # every bar stands on the axis


def test_an_empty_bucket_has_no_bar_and_a_tiny_one_stays_visible(client, people, version):
    drawn = bars(rendered(client, people["viewer"], version, [5000, 0, 1]))

    assert [b["height"] for b in drawn] == [150, 0, 1]


def test_axis_labels_are_thinned_to_stay_readable(client, people, version):
    page = rendered(client, people["viewer"], version, [i + 1 for i in range(16)])

    labels = axis_labels(page)
    assert [text for _, text in labels] == [str(i * 50) for i in range(0, 16, 2)]
    assert all(int(size) >= 12 for size, _ in labels)
    assert len(bars(page)) == 16


def test_a_few_buckets_get_every_label_and_every_count(client, people, version):
    page = rendered(client, people["viewer"], version, [3, 9, 4])

    assert [text for _, text in axis_labels(page)] == ["0", "50", "100"]
    counts = re.findall(r'<text class="ds-hist-count"[^>]*>(\d+)<', page)
    assert counts == ["3", "9", "4"]


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_the_tallest_bar_is_as_tall_as_its_box(
    processes,
    browser,  # noqa: F811
    make_user,
    tmp_path,
):
    from apps.projects.models import Membership, Project
    from tests.browser.test_review_inbox import login

    project = Project.objects.create(name="Lengths")
    user = make_user("looker")
    Membership.objects.create(project=project, user=user, role="member")
    version, _ = do_import(project, user, write_csv(tmp_path / "qa.csv", QA_ROWS))
    services.version_set_stats(
        version=version, stats=histogram([12, 96, 240, 180, 75, 31, 9, 4, 2, 1, 0, 1, 3, 0, 1, 2])
    )
    base = processes.web()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30000)
    try:
        login(page, base, "looker")
        page.goto(base + version.get_absolute_url())
        chart = page.locator("#length-histogram")
        chart.scroll_into_view_if_needed()
        boxes = [r.bounding_box() for r in chart.locator("rect.ds-hist-bar").all()]
        svg = chart.bounding_box()
        label_px = page.eval_on_selector(
            "#length-histogram text.ds-hist-label",
            "t => t.getBoundingClientRect().height",
        )
        chart.screenshot(path=str(tmp_path / "histogram.png"))
    finally:
        page.close()

    tallest = max(boxes, key=lambda b: b["height"])
    assert tallest["height"] == pytest.approx(HISTOGRAM_PLOT_HEIGHT, abs=0.5)
    assert tallest["y"] - svg["y"] < 25  # only the room for its count above it
    assert boxes[1]["height"] == pytest.approx(96 / 240 * HISTOGRAM_PLOT_HEIGHT, abs=0.5)
    assert sum(b["width"] for b in boxes) > 0.8 * svg["width"]  # the bars span the box
    assert label_px >= 12
