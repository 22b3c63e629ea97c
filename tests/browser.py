"""Debian's Chromium, driven by Playwright: the real page in a real browser, headless.

Playwright is told to use the system's Chromium (`apt-get install chromium`; .ci/run installs
it when missing), so nothing is downloaded. Every wait is bounded by the page's default timeout.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",  # loopback only, whatever the environment says
]
PHONE = {"width": 360, "height": 740}
WAIT_MS = 10_000


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for one test."""
    if not shutil.which(CHROMIUM):
        # Not a skip: the browser tests are part of the suite. Say what is missing instead.
        pytest.fail(f"no Chromium at {CHROMIUM}: install it (Debian: apt-get install chromium)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            await browser.close()


async def phone(browser: Browser, locale: str = "en-US") -> Page:
    """A page in a new browser profile, sized like a small phone; script errors fail the test."""
    context = await browser.new_context(viewport=PHONE, locale=locale, has_touch=True)
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def overflow(page: Page) -> dict[str, int]:
    """How far the page and the chat are wider than the screen (0: no horizontal scroll)."""
    result: dict[str, int] = await page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth - window.innerWidth,
            chat: document.getElementById('main').scrollWidth
                  - document.getElementById('main').clientWidth,
        })"""
    )
    return result
