"""The web form in a real browser: headless Chromium driven by Playwright, keyboard only.

It checks what a person using a keyboard or a screen reader depends on: the focus order, that the
form works without any script, the confirmation page, and errors shown next to their field.
Chromium is Debian's (``/usr/bin/chromium``); Playwright's own browser downloads are never used.
Under ``CI=true`` a missing browser fails the test instead of skipping it. A screenshot of each
page is kept in ``tmp_path`` and copied to ``$OMNIDESK_TEST_ARTIFACTS`` (default
``var/test-artifacts/`` in the repository).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from intake.envelope import Party
from tests import test_webform as webform
from tests.peers import missing
from tests.test_webform import PNG, Desk

# The harness fixtures of the adapter tests: the adapter with a recording ingest, and uvicorn.
make_desk = webform.make_desk
served = webform.served

CHROMIUM = Path(os.environ.get("OMNIDESK_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("OMNIDESK_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "var" / "test-artifacts")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 360, "height": 900})
    yield context.new_page()
    context.close()


def keep_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    return shot


def focused(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))


def test_keyboard_user_sends_the_form_with_an_attachment(
    page: Any, make_desk: Callable[..., Desk], served: Callable[[FastAPI], str], tmp_path: Path,
) -> None:
    desk = make_desk()
    base = served(desk.app)
    page.goto(f"{base}/form")
    assert page.title() == "Contact support"
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(focused(page))
    assert order == ["name", "email", "subject", "message", "attachments", "send"]

    page.focus("#name")
    page.keyboard.type("Ana Lima")
    page.keyboard.press("Tab")
    page.keyboard.type("ana@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type("Printer on fire")
    page.keyboard.press("Tab")
    page.keyboard.type("It started smoking.")
    page.keyboard.press("Enter")
    page.keyboard.type("Photo attached.")
    page.set_input_files("#attachments", files=[{"name": "fire.png", "mimeType": "image/png", "buffer": PNG}])
    page.focus("#send")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert page.locator("h1").inner_text() == "Message received"
    status = page.locator("[role=status]").inner_text()
    assert "confirmation email with your ticket number is on its way" in status
    assert "ana@example.com" in status
    keep_screenshot(page, tmp_path, "webform-confirmation.png")

    [envelope] = desk.ingest.envelopes()
    assert page.locator("code").inner_text() == envelope.external_id
    assert envelope.sender == Party(address="ana@example.com", name="Ana Lima", kind="email")
    assert envelope.subject == "Printer on fire"
    assert envelope.text == "It started smoking.\nPhoto attached."
    [attachment] = envelope.attachments
    assert (attachment.filename, attachment.content_type) == ("fire.png", "image/png")
    assert desk.blobs.get(attachment.sha256) == PNG
    assert envelope.thread_keys[0].key == f"webform:sub:{envelope.external_id}"


def test_missing_email_is_shown_next_to_the_field(
    page: Any, make_desk: Callable[..., Desk], served: Callable[[FastAPI], str], tmp_path: Path,
) -> None:
    desk = make_desk()
    page.goto(f"{served(desk.app)}/form")
    page.fill("#name", "Ana")
    page.fill("#message", "No email given")
    with page.expect_navigation():
        page.click("#send")

    summary = page.locator("[role=alert]")
    assert "There is a problem" in summary.inner_text()
    assert summary.locator("a[href='#email']").count() == 1
    email = page.locator("#email")
    assert email.get_attribute("aria-invalid") == "true"
    described = (email.get_attribute("aria-describedby") or "").split()
    assert "email-error" in described
    error = page.locator("#email-error")
    assert error.is_visible() and "Enter your email address" in error.inner_text()
    # The error sits right above its field, inside the same field group.
    assert page.locator(".field:has(#email) #email-error").count() == 1
    assert page.input_value("#message") == "No email given"  # what was typed is kept
    # Following the summary's link moves the focus to the field.
    summary.locator("a[href='#email']").click()
    assert focused(page) == "email"
    keep_screenshot(page, tmp_path, "webform-error.png")
    assert desk.ingest.calls == 0
