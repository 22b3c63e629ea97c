"""The web chat in a real browser: Debian's Chromium, headless, driven by Playwright.

A person joins by an invite link, answers every kind of item with taps and keys, undoes, reads
gold feedback, receives a push while the page is open, on a 360 x 740 screen without horizontal
scrolling; forged posts, from the page itself or from another site, change nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image
from playwright.async_api import Page, expect

from chatlabel.config import Web
from chatlabel.conversation import Catalog
from chatlabel.transports.web import WebTransport
from tests.browser import PHONE, chromium, overflow, phone
from tests.web_harness import SECRET, project, running_web

pytestmark = pytest.mark.timeout(90)

EN = Catalog().texts("en")


def item_box(page: Page, text: str):  # type: ignore[no-untyped-def]
    """The message that shows an item with this text."""
    return page.locator("li.msg", has=page.locator("p.text", has_text=text)).last


async def test_a_volunteer_joins_by_invite_and_labels_with_taps_keys_and_undo(
    tmp_path: Path,
) -> None:
    gold = {"qualification": 1, "min_gold_accuracy": 0.0, "gold_feedback": True}
    access = {"mode": "invite", "invite_codes": ["JOIN-ME-NOW"]}
    async with running_web(tmp_path, [project(overlap=1, quality=gold)], access=access) as b:
        await b.add_items("animals", [
            {"id": "g1", "text": "It barks at the postman.", "gold": "dog", "gold_reason": "Barking."},
            {"id": "t1", "text": "Meow, says it."},
            {"id": "t2", "text": "Tweet, says it."},
        ])  # fmt: skip
        async with chromium() as browser:
            page = await phone(browser)
            await page.goto(b.base + "/join/JOIN-ME-NOW")
            await expect(page.locator("li.msg").first).to_contain_text("Welcome to Animals!")
            assert page.url == b.base + "/"  # the code does not stay in the address bar

            # A missed gold item: the choice stays on it, with the expected answer.
            first = item_box(page, "It barks at the postman.")
            await first.get_by_role("button", name="cat").click()
            await expect(first.locator(".status")).to_have_text("✅ cat")
            await expect(first.locator(".note")).to_have_text(
                "ℹ️ The expected answer was: dog\nBarking."
            )
            # Keys on a keyboard: 2 picks the second choice of the open item.
            meow = item_box(page, "Meow, says it.")
            await expect(meow.get_by_role("button", name="dog")).to_be_visible()
            await page.keyboard.press("2")
            await expect(meow.locator(".status")).to_have_text("✅ dog")
            tweet = item_box(page, "Tweet, says it.")
            await expect(tweet.get_by_role("button", name="Skip")).to_be_visible()
            # u takes the last answer back: the item is open again, the newer one gone.
            await page.keyboard.press("u")
            await expect(meow.get_by_role("button", name="bird")).to_be_visible()
            await expect(page.locator("li.msg", has_text="Tweet, says it.")).to_have_count(0)
            await meow.get_by_role("button", name="bird").click()
            await expect(meow.locator(".status")).to_have_text("✅ bird")
            await expect(tweet.get_by_role("button", name="Skip")).to_be_visible()
            await page.keyboard.press("s")
            await expect(tweet.locator(".status")).to_have_text("⏭ Skipped")
            await expect(page.locator("li.msg").last).to_have_text(EN("idle.no_work"))

            # New work while the page is open: it arrives by itself.
            await b.add_items("animals", [{"id": "t3", "text": "Hiss, says it."}])
            pushed = item_box(page, "Hiss, says it.")
            await expect(pushed.get_by_role("button", name="cat")).to_be_visible()
            await expect(pushed.get_by_role("button", name="cat")).to_be_in_viewport()
            assert await overflow(page) == {"page": 0, "chat": 0}

            # Commands typed in the box, with Enter.
            await page.get_by_label("Type your answer").fill("/stats")
            await page.keyboard.press("Enter")
            await expect(page.locator("li.msg").last).to_contain_text("Answers: 2 (skipped 1)")
            assert page.errors == []  # type: ignore[attr-defined]
        person = (await b.query("SELECT key FROM annotators"))[0][0]
        assert await b.answers() == [
            (person, "g1", "cat"), (person, "t1", "bird"), (person, "t2", None),
        ]  # fmt: skip


async def test_multi_rating_verify_and_free_text_items(tmp_path: Path) -> None:
    picture = tmp_path / "street.png"
    Image.new("RGB", (900, 600), (90, 140, 200)).save(picture)
    box = [{"x": 100, "y": 100, "w": 300, "h": 200, "label": "car"}]
    no_gold = {"qualification": 0, "gold_rate": 0.0}
    projects = [
        project(
            "colours", kind="multi", labels=["red", "green", "blue"], overlap=1, quality=no_gold
        ),
        project("stars", kind="rating", labels=[str(n) for n in range(1, 11)], overlap=1),
        project("cars", kind="verify", labels=["car", "bus"], overlap=1),
        project("words", kind="text", labels=[], overlap=1),
    ]
    async with running_web(tmp_path, projects) as b:
        await b.add_items("colours", [{"id": "c1", "text": "A flag"}])
        await b.add_items("stars", [{"id": "r1", "text": "How good is this tea?"}])
        await b.add_items("cars", [{
            "id": "v1", "text": "Is this a car?", "media_kind": "image",
            "media_path": str(picture), "suggestion": "car", "boxes": box,
        }])  # fmt: skip
        await b.add_items("words", [{"id": "w1", "text": "Describe the cat."}])
        async with chromium() as browser:
            page = await phone(browser)

            await page.goto(b.base + "/join/colours")
            flag = item_box(page, "A flag")
            red = flag.get_by_role("button", name="red")
            await red.click()
            await expect(red).to_have_attribute("aria-pressed", "true")
            await flag.get_by_role("button", name="blue").click()
            await expect(flag.get_by_role("button", name="blue")).to_have_attribute(
                "aria-pressed", "true"
            )
            await expect(flag.get_by_role("button", name="green")).to_have_attribute(
                "aria-pressed", "false"
            )
            await flag.get_by_role("button", name="Done").click()
            await expect(flag.locator(".status")).to_have_text("✅ red, blue")

            await page.goto(b.base + "/join/stars")
            tea = item_box(page, "How good is this tea?")
            await tea.get_by_role("button", name="10", exact=True).wait_for()
            assert await overflow(page) == {"page": 0, "chat": 0}  # ten buttons wrap
            await tea.get_by_role("button", name="7", exact=True).click()
            await expect(tea.locator(".status")).to_have_text("✅ 7")

            await page.goto(b.base + "/join/cars")
            car = item_box(page, "Is this a car?")
            image = car.locator(".media img")
            await expect(image).to_be_visible()
            assert await image.evaluate("i => i.complete && i.naturalWidth") == 900
            await expect(car.locator("p.text")).to_contain_text("Suggested: car")
            await car.get_by_role("button", name="✅ Yes").click()
            await expect(car.locator(".status")).to_have_text("✅ yes")
            await expect(image).to_be_visible()  # an edit keeps the picture

            await page.goto(b.base + "/join/words")
            cat = item_box(page, "Describe the cat.")
            await cat.get_by_role("button", name=EN("item.write_button")).click()
            box_ = page.get_by_label("Type your answer")
            await expect(box_).to_be_focused()
            await box_.fill("a tabby, <b>purring</b>")
            await page.keyboard.press("Enter")
            await expect(cat.locator(".status")).to_have_text("✅ a tabby, <b>purring</b>")
            await expect(page.locator("li.msg.own")).to_have_text("a tabby, <b>purring</b>")
            await expect(box_).to_have_value("")
            assert page.errors == []  # type: ignore[attr-defined]
        values = {item: value for _, item, value in await b.answers()}
        assert values == {
            "c1": '["red", "blue"]', "r1": "7", "v1": "yes", "w1": "a tabby, <b>purring</b>",
        }  # fmt: skip


async def test_the_page_fits_a_phone_and_shows_text_as_text(tmp_path: Path) -> None:
    picture = tmp_path / "tall.png"
    Image.new("RGB", (600, 1600), (30, 160, 90)).save(picture)
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3
    labels = ["a rather long label for a phone", "another quite long label here", "short"]
    async with running_web(tmp_path, [project(labels=labels, overlap=1)]) as b:
        await b.add_items("animals", [
            {"id": "x1", "text": '<img src=x onerror="window.pwned=1"> <script>window.pwned=2</script>'},
            {"id": "l1", "text": f"{long_word} and https://example.org/{'a' * 150}",
             "media_kind": "image", "media_path": str(picture)},
        ])  # fmt: skip
        async with chromium() as browser:
            page = await phone(browser)
            await page.goto(b.base + "/")
            hostile = item_box(page, "<img src=x")
            await expect(hostile.locator("p.text")).to_have_text(
                '<img src=x onerror="window.pwned=1"> <script>window.pwned=2</script>'
            )
            assert await page.evaluate("window.pwned") is None
            assert await hostile.locator("img, script").count() == 0
            await hostile.get_by_role("button", name="short").click()

            long_item = item_box(page, long_word[:20])
            last_button = long_item.get_by_role("button", name="Skip")
            await expect(last_button).to_be_in_viewport()  # the item's buttons are in view
            await expect(long_item.locator(".media img")).to_be_visible()
            assert await overflow(page) == {"page": 0, "chat": 0}
            heights = await long_item.locator("button.btn").evaluate_all(
                "bs => bs.map(b => b.getBoundingClientRect().height)"
            )
            assert heights and min(heights) >= 44  # big enough for a thumb
            shot = tmp_path / "phone.png"
            await page.screenshot(path=str(shot))
            with Image.open(shot) as im:
                assert im.size == (PHONE["width"], PHONE["height"])
            # The menu of commands opens within the screen too.
            await page.get_by_text("Menu").click()
            stats = f"/me — {EN('menu.me')}"
            await expect(page.get_by_role("button", name=stats)).to_be_visible()
            assert await overflow(page) == {"page": 0, "chat": 0}
            panel = await page.locator(".panel").bounding_box()
            assert panel is not None and panel["x"] >= 0
            assert panel["x"] + panel["width"] <= PHONE["width"]
            assert page.errors == []  # type: ignore[attr-defined]


async def test_forged_posts_from_the_page_or_another_site_change_nothing(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        await b.add_items("animals", [{"id": "t1", "text": "Meow, says it."}])
        target = b.base + "/api/press"
        # Another site on this machine (same host, another port: same site, other origin).
        evil = web.Application()

        async def attack(request: web.Request) -> web.Response:
            data = request.query["data"]
            html = f"""<!doctype html><body>
            <form id=f method=POST action="{target}" enctype="text/plain">
            <input name='{{"ref":null,"data":"{data}","x":"' value='"}}'></form>
            <script>
            fetch("{target}", {{method: "POST", credentials: "include", mode: "no-cors",
              headers: {{"Content-Type": "text/plain"}},
              body: JSON.stringify({{ref: null, data: "{data}"}})}})
              .finally(() => document.getElementById("f").submit());
            </script></body>"""
            return web.Response(text=html, content_type="text/html")

        evil.router.add_get("/", attack)
        runner = web.AppRunner(evil)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        evil_port = runner.addresses[0][1]
        try:
            async with chromium() as browser:
                page = await phone(browser)
                await page.goto(b.base + "/")
                meow = item_box(page, "Meow, says it.")
                await expect(meow.get_by_role("button", name="cat")).to_be_visible()
                ref = await meow.get_attribute("data-ref")
                # The real button's data, posted from the page without the session's token.
                (assignment,) = await b.query("SELECT id FROM assignments")
                press = f"a:{assignment[0]}:0"
                statuses = await page.evaluate(
                    """async ([ref, data]) => {
                        const out = [];
                        for (const token of [null, "forged-token"]) {
                            const headers = {"Content-Type": "application/json"};
                            if (token) headers["X-CSRF-Token"] = token;
                            const r = await fetch("/api/press", {method: "POST", headers,
                                body: JSON.stringify({ref, data})});
                            out.push(r.status);
                        }
                        return out;
                    }""",
                    [ref, press],
                )
                assert statuses == [403, 403]
                # The same browser (its cookie and all) visits the other site.
                other = await page.context.new_page()
                async with other.expect_navigation(url=re.compile("/api/press")) as nav:
                    await other.goto(f"http://127.0.0.1:{evil_port}/?data={press}")
                response = await nav.value
                assert response is not None and response.status == 403
                assert await b.answers() == []
                await expect(meow.get_by_role("button", name="cat")).to_be_visible()
                # The page's own press still works.
                await meow.get_by_role("button", name="cat").click()
                await expect(meow.locator(".status")).to_have_text("✅ cat")
                assert page.errors == []  # type: ignore[attr-defined]
        finally:
            await runner.cleanup()
        person = (await b.query("SELECT key FROM annotators"))[0][0]
        assert await b.answers() == [(person, "t1", "cat")]


async def test_a_dropped_stream_catches_up_and_a_restarted_server_picks_up(tmp_path: Path) -> None:
    async with running_web(tmp_path, [project(overlap=1)]) as b:
        await b.add_items("animals", [{"id": "t1", "text": "Meow, says it."}])
        async with chromium() as browser:
            page = await phone(browser)
            await page.goto(b.base + "/")
            await item_box(page, "Meow, says it.").get_by_role("button", name="cat").click()
            await expect(page.locator("li.msg").last).to_have_text(EN("idle.no_work"))
            # The connection drops (a tunnel, a flaky network); meanwhile work arrives.
            b.transport.outlet.close()
            await b.add_items("animals", [{"id": "t2", "text": "Woof, says it."}])
            await expect(page.locator("#conn")).to_have_text(EN("web.connecting"))
            woof = item_box(page, "Woof, says it.")
            await expect(woof.get_by_role("button", name="dog")).to_be_visible()
            await expect(page.locator("#conn")).to_have_text(EN("web.reconnected"))
            await expect(page.locator("li.msg", has_text="Woof, says it.")).to_have_count(1)

            # The server restarts (its screens are gone): the page starts the chat again.
            before = await woof.get_attribute("data-ref")
            port = b.transport.port
            await b.transport.stop()
            b.transport = WebTransport(
                b.service, b.reports, Web(port=port), secret=SECRET,
                secret_path=tmp_path / "s", media_cache=tmp_path / "cache",
            )  # fmt: skip
            await b.transport.start()
            await expect(page.locator(f'li[data-ref="{before}"]')).to_have_count(0, timeout=15_000)
            await expect(page.locator("li.msg").first).to_contain_text("Welcome to Animals!")
            woof = item_box(page, "Woof, says it.")  # the open item, shown again
            await woof.get_by_role("button", name="dog").click()
            await expect(woof.locator(".status")).to_have_text("✅ dog")
            assert page.errors == []  # type: ignore[attr-defined]
        person = (await b.query("SELECT key FROM annotators"))[0][0]
        assert await b.answers() == [(person, "t1", "cat"), (person, "t2", "dog")]
