"""Every page a member, a reviewer and an admin can open fits a phone (390 px) and a laptop
(1280 px): nothing pushes the page sideways, the top bar stays on one line, and the project's name
is shown whole. The pages are the authorization matrix's GET routes, so a new page is measured the
day it is added to the matrix."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from apps.projects.models import Project
from tests.browser.test_live_job_page import browser  # noqa: F401 - the fixture
from tests.test_authorization import MATRIX, all_routes, fill_route, world  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WIDTHS = ((390, 844), (1280, 800))
# One test each (a walk is ~30 pages); the reviewer reads Chinese, whose labels differ in width.
PERSONAS = (("member", "en-GB"), ("reviewer", "zh-CN"), ("admin", "en-GB"))
# Long enough to be cut by the old 45% name column at phone width, short enough to fit a line.
PROJECT_NAME = "Clinic QA — cardiology night shift"
# Set to a folder to keep a screenshot of every page at every width (a look by eye).
SHOTS = os.environ.get("ATELIER_LAYOUT_SHOTS", "")

MEASURE = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  const scroll = document.scrollingElement.scrollWidth;
  if (scroll > width) {
    // Name the widest culprits: elements that reach past the right edge, outermost first.
    const clipped = (el) => {
      if (["absolute", "fixed"].includes(getComputedStyle(el).position)) return false;  // may escape
      for (let up = el.parentElement; up && up !== document.body; up = up.parentElement)
        if (getComputedStyle(up).overflowX !== "visible") return true;
      return false;
    };
    const over = [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > width + 1 && !clipped(el));
    const outermost = new Set(over);
    const wide = over.filter((el) => !outermost.has(el.parentElement)).slice(0, 4)
      .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
        + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : ""));
    problems.push(`page is ${scroll}px wide (${wide.join(", ")})`);
  }
  const bar = document.querySelector(".topbar-inner");
  if (bar) {
    const items = [...bar.querySelectorAll("a, button, summary, .user")]
      .filter((el) => el.getClientRects().length && el.checkVisibility() && !el.closest("[data-menu-panel]"));
    const tops = new Set();
    for (const el of items) {
      const box = el.getBoundingClientRect();
      if (box.left < -1 || box.right > width + 1) problems.push(`top bar item "${el.textContent.trim()}" is off-screen`);
      // A text node broken over two lines has two boxes.
      const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      for (let text = walker.nextNode(); text; text = walker.nextNode()) {
        const range = document.createRange();
        range.selectNodeContents(text);
        if ([...range.getClientRects()].filter((r) => r.width > 0).length > 1)
          problems.push(`top bar item "${el.textContent.trim()}" wraps`);
      }
      tops.add(Math.round(box.top + box.height / 2));
    }
    const rows = [...tops].sort((a, b) => a - b);
    if (rows.length && rows[rows.length - 1] - rows[0] > 8) problems.push("top bar wraps onto a second line");
    if (bar.scrollWidth > bar.clientWidth + 1) problems.push("top bar is wider than the screen");
  }
  const name = document.querySelector(".subnav-project a");
  if (name) {
    const box = name.getBoundingClientRect();
    const holder = name.parentElement;
    if (holder.scrollWidth > holder.clientWidth + 1 || box.right > width + 1 || box.left < 0)
      problems.push("the project name is cut");
  }
  // A phone scrolls the tab row sideways; a laptop shows every tab.
  const tabs = document.querySelector(".subnav-tabs");
  if (tabs && width > 820) {
    const edge = tabs.getBoundingClientRect().right;
    for (const tab of tabs.querySelectorAll("a"))
      if (tab.getBoundingClientRect().right > edge + 1) problems.push(`the tab "${tab.textContent.trim()}" is hidden`);
  }
  return problems;
}"""


def login(context, base: str, username: str) -> None:
    page = context.new_page()
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.close()


def page_urls(world) -> list[str]:  # noqa: F811
    """Every GET route of the matrix that is not the API, filled with the world's ids."""
    routes = all_routes()
    urls = {
        fill_route(routes[key], world.ids(check.job))
        for key, checks in MATRIX.items()
        for check in checks
        if check.method == "GET" and not check.api
    }
    return sorted(urls)


def layout_problems(page, url: str, shot_prefix: str) -> list[str]:
    """Load `url` once, then measure it at each width (a media query needs no reload)."""
    problems = []
    page.goto(url)
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        problems += [f"{width}px: {p}" for p in page.evaluate(MEASURE)]
        if SHOTS:
            name = re.sub(r"\W+", "_", page.url.split("//", 1)[1].split("/", 1)[1]).strip("_")
            folder = Path(SHOTS)
            folder.mkdir(parents=True, exist_ok=True)
            shot = folder / f"{shot_prefix}-{name or 'home'}-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
    return problems


@pytest.mark.parametrize(("persona", "locale"), PERSONAS)
def test_no_page_is_wider_than_a_phone_or_a_laptop(
    persona,
    locale,
    world,  # noqa: F811 - before the browser: its setup rings doorbells outside an event loop
    processes,
    browser,  # noqa: F811
):
    Project.objects.filter(pk=world.project.pk).update(name=PROJECT_NAME)
    base = processes.web()
    context = browser.new_context(
        locale=locale, viewport={"width": WIDTHS[0][0], "height": WIDTHS[0][1]}
    )
    context.set_default_timeout(30000)
    login(context, base, persona)
    page = context.new_page()
    found: list[str] = []
    measured = 0
    for url in page_urls(world):
        head = context.request.get(base + url, max_redirects=0)
        if head.status != 200 or "text/html" not in head.headers.get("content-type", ""):
            continue  # a download, a JSON answer, a redirect, or a page this role may not open
        measured += 1
        found += [f"{url} {p}" for p in layout_problems(page, base + url, f"{locale}-{persona}")]
    context.close()
    # The walk reaches the pages it is meant to: most of the project's own.
    assert measured >= 20, measured
    assert not found, "\n".join(found)
