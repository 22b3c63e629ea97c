"""The README's pictures of the web chat: the sample project in Chromium, phone and desktop.

    python -m tests.web_screenshots docs/

Not a test: it writes docs/web-phone.png, docs/web-phone-dark.png and docs/web-desktop.png.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import tomllib
from pathlib import Path

from playwright.async_api import Page, expect

from chatlabel.importer import import_file
from chatlabel.sample import write_sample
from tests.browser import PHONE, chromium, phone
from tests.web_harness import running_web


async def answer(page: Page, truth: dict[str, str], *, wrong: bool = False) -> None:
    """Answer the open item (the wrong way round when asked: to show gold feedback)."""
    waiting = page.locator("li.msg", has=page.get_by_role("button", name="Skip")).last
    item = page.locator(f'li[data-ref="{await waiting.get_attribute("data-ref")}"]')
    text = await item.locator("p.text").inner_text()
    label = truth[text]
    if wrong:
        label = next(x for x in ("positive", "negative", "neutral") if x != label)
    await item.get_by_role("button", name=label, exact=True).click()
    await expect(item.locator(".status")).to_be_visible()


async def main(out: Path) -> None:
    """Write the pictures into `out`."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = tomllib.loads(write_sample(folder / "sample", 24).read_text())
        rows = [json.loads(line) for line in (folder / "sample" / "items.jsonl").open()]
        answers = json.loads((folder / "sample" / "truth.json").read_text())
        truth = {r["text"]: answers[r["id"]] for r in rows}
        async with running_web(folder, config["project"]) as b:
            await import_file(b.service, "sentiment", folder / "sample" / "items.jsonl")
            async with chromium() as browser:
                page = await phone(browser)
                await page.goto(b.base + "/")
                await answer(page, truth, wrong=True)  # a missed check item: feedback
                await answer(page, truth)
                await answer(page, truth)
                await answer(page, truth)
                # The first pictures come after the check items.
                picture = page.locator("li.msg", has=page.locator(".media img")).last
                await expect(picture.get_by_role("button", name="Skip")).to_be_in_viewport()
                await page.wait_for_timeout(300)
                await page.screenshot(path=str(out / "web-phone.png"))

                dark = await browser.new_context(viewport=PHONE, color_scheme="dark")
                night = await dark.new_page()
                await night.goto(b.base + "/")
                await answer(night, truth, wrong=True)
                await night.get_by_text("Menu").click()
                await night.wait_for_timeout(300)
                await night.screenshot(path=str(out / "web-phone-dark.png"))

                wide = await browser.new_context(viewport={"width": 1000, "height": 700})
                desk = await wide.new_page()
                await desk.goto(b.base + "/")
                await answer(desk, truth, wrong=True)
                await answer(desk, truth)
                await desk.wait_for_timeout(300)
                await desk.screenshot(path=str(out / "web-desktop.png"))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")))
