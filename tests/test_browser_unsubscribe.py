"""A real browser on the preference page: a real server, a real sent email's link,
headless Chromium (Debian's, driven by Playwright), no JavaScript needed by the page."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import sync_playwright

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.web.app import create_app
from tests.consent_support import MONDAY, add, build, ledger, one_click_url, sent_email

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's Chromium at /usr/bin/chromium (.ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Runtime, str]]:
    """The app on a real uvicorn server in a thread; links point at it."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    rt = build(tmp_path / "project", base_url=base_url)
    server = uvicorn.Server(uvicorn.Config(create_app(rt, clock=lambda: MONDAY), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield rt, base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_unticking_a_purpose_in_chromium_withdraws_it_with_evidence(served):
    rt, base_url = served
    cid = add(rt, "camille@example.com", MONDAY,
              consents=(("email", "newsletter"), ("email", "marketing")))
    tick(rt, MONDAY)
    link = one_click_url(sent_email(rt, cid))
    assert link.startswith(f"{base_url}/u/")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=False, locale="en-GB")
            page = context.new_page()
            page.goto(link)
            assert page.get_by_role("heading", level=1).inner_text() == \
                "Your email and SMS preferences"
            newsletter = page.get_by_label("Newsletter and educational content")
            marketing = page.get_by_label("Offers, webinars, case studies")
            assert newsletter.is_checked() and marketing.is_checked()
            newsletter.uncheck()
            page.get_by_role("button", name="Save my choices").click()
            page.wait_for_load_state()
            status = page.get_by_role("status")
            assert "Your choices are saved." in status.inner_text()
            assert "Newsletter and educational content" in status.inner_text()
            assert not page.get_by_label("Newsletter and educational content").is_checked()
            assert page.get_by_label("Offers, webinars, case studies").is_checked()
            assert context.cookies() == []
        finally:
            browser.close()

    withdrawal = ledger(rt, cid)[-1]
    assert (withdrawal["channel"], withdrawal["purpose"], withdrawal["action"],
            withdrawal["source"]) == ("email", "newsletter", "withdrawn", "preference-page")
    evidence = withdrawal["evidence"]
    assert evidence["ip"] == "127.0.0.1" and "Chrome" in evidence["user_agent"]
    assert evidence["message"] == sent_email(rt, cid)["X-Nurture-Message-Id"]
    assert evidence["form"] == {"consent": ["email:marketing"], "action": "save"}
    assert [r["action"] for r in ledger(rt, cid)] == ["granted", "granted", "withdrawn"]
