"""The report page in a real browser: headless Chromium (Debian's, driven by Playwright)
opens the file `nurture report --html` wrote with JavaScript off and every network
request refused, and the page `/admin/report` serves under its own CSP; the charts are
drawn (their bars have a size on screen). Screenshots are kept under pytest's tmp dir."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Page, sync_playwright

from nurture.services import report_page
from nurture.services.report import Scope, build_report
from nurture.web.app import create_app
from tests.consent_support import API_KEY, MONDAY
from tests.report_support import Story, make_story

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's Chromium at /usr/bin/chromium (.ci/run installs it)"),
]


@pytest.fixture
def story(tmp_path: Path) -> Iterator[Story]:
    made = make_story(tmp_path / "project")
    yield made
    made.rt.db.dispose()


def drawn(page: Page, selector: str) -> list[dict[str, float]]:
    """The on-screen boxes of the elements `selector` finds (an undrawn one has none)."""
    boxes = []
    for element in page.locator(selector).all():
        box = element.bounding_box()
        assert box is not None, f"{selector} is not rendered"
        boxes.append(box)
    return boxes


def check_charts(page: Page, story: Story) -> None:
    with story.rt.db.reader() as conn:
        data = build_report(conn, story.rt.journeys, MONDAY, Scope())
    funnels = page.locator("svg.chart.funnel")
    assert funnels.count() == len(data["journeys"]) == 2
    for journey in data["journeys"]:
        bars = drawn(page, f'svg.funnel[data-journey="{journey["id"]}"] rect.bar')
        assert len(bars) == 6                       # entered … goal reached
        values = [journey["funnel"][k] for k in journey["funnel"]]
        for box, value in zip(bars, values, strict=True):
            assert (box["width"] > 0) == (value > 0), (journey["id"], value, box)
    weeks = len(data["conversions"]["weeks"])
    assert weeks == 2
    assert len(drawn(page, "svg.chart.conversions rect.bar")) == 3 * weeks
    reasons = drawn(page, "svg.chart.skip-reasons rect.bar")
    assert len(reasons) == len(data["skipped_by_reason"]) >= 5
    assert all(box["width"] > 0 and box["height"] > 0 for box in reasons)
    labels = [bar.get_attribute("data-label")
              for bar in page.locator("svg.chart.skip-reasons rect.bar").all()]
    assert set(labels) == set(data["skipped_by_reason"])
    assert page.get_by_role("heading", level=1).inner_text() == "nurture report"
    assert page.locator("table.steps").count() == 2


def shoot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    print(f"report screenshot: {path}")


def test_the_html_report_opens_offline_with_its_charts_drawn(story, tmp_path):
    html = tmp_path / "report.html"
    with story.rt.db.reader() as conn:
        html.write_text(report_page.render(build_report(conn, story.rt.journeys, MONDAY,
                                                        Scope())))
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=False,
                                          viewport={"width": 1440, "height": 900})
            context.route("**/*", lambda route: route.continue_()
                          if route.request.url.startswith("file://") else route.abort())
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            check_charts(page, story)
            shoot(page, tmp_path / "report.png")
        finally:
            browser.close()
    assert requested == [html.as_uri()]             # nothing else was even asked for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_admin_report_renders_in_chromium_under_its_csp(story, tmp_path):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(story.rt, clock=lambda: MONDAY),
                                           host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    blocked: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(extra_http_headers={"X-API-Key": API_KEY},
                                              viewport={"width": 1440, "height": 900})
                page = context.new_page()
                page.on("console", lambda msg: blocked.append(msg.text)
                        if "Content Security Policy" in msg.text else None)
                answer = page.goto(f"http://127.0.0.1:{port}/admin/report")
                assert answer is not None and answer.status == 200
                check_charts(page, story)
                # the inline stylesheet applied: CSP allows it
                assert page.locator("table.steps th").first.evaluate(
                    "th => getComputedStyle(th).backgroundColor") == "rgb(244, 244, 244)"
                shoot(page, tmp_path / "admin-report.png")
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert blocked == []
