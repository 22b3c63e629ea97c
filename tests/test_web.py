"""The web chat over real HTTP on 127.0.0.1: sessions, CSRF, limits, presses, media, reconnects.

Each test runs the real aiohttp server and talks to it the way the page's script does (see
web_harness.Visitor), then checks what was stored: a refused request must change nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from PIL import Image

from chatlabel.cli import main
from chatlabel.config import Web
from chatlabel.conversation import Catalog, Message
from chatlabel.importer import import_file
from chatlabel.service.types import UserRef
from chatlabel.transports import web_outlet
from chatlabel.transports.web_session import Origins, Sessions, languages, load_secret
from tests.conftest import write_jsonl
from tests.web_harness import COORDINATOR, Visitor, buttons, captions, project, running_web

pytestmark = pytest.mark.timeout(60)

ITEMS = [{"id": f"t{n}", "text": f"Animal number {n}"} for n in range(1, 5)]
EN = Catalog().texts("en")


async def one_answerer(bench: Any) -> tuple[Visitor, dict[str, Any]]:
    """A visitor who joined and has an open item."""
    v = await bench.visitor()
    await v.start()
    await v.wait_for(v.open_items)
    return v, v.open_items()[0]


# -- joining ------------------------------------------------------------------------------------


async def test_an_invite_link_gives_a_signed_strict_cookie_and_the_first_item(
    tmp_path: Path,
) -> None:
    access = {"mode": "invite", "invite_codes": ["OPEN-SESAME"]}
    async with running_web(tmp_path, access=access) as b:
        await b.add_items("animals", ITEMS)
        v = Visitor(b.base)
        b.visitors.append(v)
        async with v.http.get(b.base + "/join/OPEN-SESAME") as r:
            page = await r.text()
            assert r.status == 200 and r.content_type == "text/html"
            # The page itself has no side effect: no cookie, no join (link previews fetch it).
            assert "Set-Cookie" not in r.headers
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "OPEN-SESAME" not in page  # the script reads the code from the address
        assert await b.query("SELECT COUNT(*) FROM annotators") == [(0,)]

        async with v.http.post(b.base + "/api/session", json={}) as r:
            assert r.status == 200
            cookie = r.headers["Set-Cookie"]
            v.token = (await r.json())["token"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert f"Max-Age={30 * 86400}" in cookie
        await v.connect()
        await v.start("OPEN-SESAME")
        item = (await v.wait_for(v.open_items))[0]
        assert v.messages()[0]["text"].startswith("Welcome to Animals!")
        assert item["text"] == "Animal number 1"
        assert captions(item) == ["cat", "dog", "bird", "Skip", "Report"]
        assert [b["key"] for b in buttons(item)] == ["1", "2", "3", "s", ""]  # Report has no key
        assert await b.query("SELECT key, invited FROM annotators") == [(f"web:{v.person}", 1)]

        # Without the code, or with a wrong one, the door stays shut.
        for code in (None, "guess"):
            stranger = await b.visitor()
            await stranger.start(code)
            await stranger.wait_for(lambda s=stranger: s.messages())
            assert stranger.last_text() == EN("join.invite_only")
            assert stranger.open_items() == []


async def test_a_forged_or_expired_cookie_starts_a_new_person(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        v = await b.visitor()
        first = v.person
        # The same cookie: the same person, renewed.
        assert (await v.open())["expired"] is False and v.person == first
        # A cookie naming someone else with this one's signature is nobody's.
        value = next(c.value for c in v.http.cookie_jar)
        forged = ("b" if value[0] != "b" else "c") + value[1:]
        v.set_cookie(b.transport.cookie_name, forged)
        assert (await v.open())["expired"] is True
        second = v.person
        assert second not in (first, forged.split(".")[0])
        # Thirty days later the session has expired: a new person again, told so.
        b.clock.advance(30 * 86400 + 1)
        session = await v.open()
        assert session["expired"] is True and v.person not in (first, second)
        assert session["id"].startswith("Your ID: web:")


# -- refusals -----------------------------------------------------------------------------------


async def test_posts_need_the_pages_origin_host_and_token(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        v, item = await one_answerer(b)
        other = await b.visitor()
        cat = buttons(item)[0]["data"]
        press = {"ref": item["ref"], "data": cat}
        host = f"127.0.0.1:{b.transport.port}"
        refused = [
            ({"Origin": ""}, 403),  # no Origin at all
            ({"Origin": "http://evil.example"}, 403),
            ({"Origin": "http://127.0.0.1:1"}, 403),  # same site, another port: another origin
            ({"X-CSRF-Token": ""}, 403),
            ({"X-CSRF-Token": other.token}, 403),  # someone else's token
            ({"Sec-Fetch-Site": "cross-site"}, 403),
            ({"Sec-Fetch-Site": "same-site"}, 403),
            ({"Content-Type": "text/plain"}, 415),
            # A DNS name rebound to this machine: the Host is not one we answer to.
            ({"Host": "evil.example", "Origin": "http://evil.example"}, 421),
        ]
        for headers, status in refused:
            got, _ = await v.post("/api/press", press, **headers)
            assert got == status, (headers, got)
        async with v.http.get(
            b.base + "/api/events", headers={"Origin": "http://evil.example"}
        ) as r:
            assert r.status == 403
        async with v.http.get(b.base + "/", headers={"Host": "rebound.example"}) as r:
            assert r.status == 421
        assert await b.answers() == []
        assert v.screen[item["ref"]] == item  # untouched
        # With everything in place the same press counts.
        assert await v.press(item, "cat") == 200
        assert await b.answers() == [(f"web:{v.person}", "t1", "cat")]
        assert host  # (the host the page was served under is the one posts came from)


async def test_oversized_and_malformed_posts_change_nothing(tmp_path: Path) -> None:
    async with running_web(tmp_path, [project(kind="text", labels=[])]) as b:
        await b.add_items("animals", ITEMS)
        v, item = await one_answerer(b)
        assert item["writer"] == EN("item.write_button")
        big = b'{"text": "' + b"x" * 20_000 + b'", "id": "abcdefgh1"}'
        assert (await v.post("/api/text", big))[0] == 413
        assert (await v.post("/api/text", {"text": "y" * 4001, "id": "abcdefgh2"}))[0] == 413
        assert (await v.post("/api/text", b"{not json"))[0] == 400
        assert (await v.post("/api/text", [1, 2]))[0] == 400
        assert (await v.post("/api/text", {"text": "   ", "id": "abcdefgh3"}))[0] == 400
        assert (await v.post("/api/text", {"text": "fine", "id": "bad id!"}))[0] == 400
        assert (await v.post("/api/press", {"data": "a" * 65, "ref": None}))[0] == 400
        assert (await v.post("/api/press", {"data": 5, "ref": None}))[0] == 400
        assert await b.answers() == []
        # A typed answer, then the same post again (a retry after a timeout): counted once.
        body = {"text": "a tabby", "id": "retry-me-1"}
        assert (await v.post("/api/text", body))[0] == 200
        assert (await v.post("/api/text", body))[0] == 200
        await v.wait_for(lambda: v.items()[0]["status"])
        assert v.items()[0]["status"] == "✅ a tabby"
        assert await b.answers() == [(f"web:{v.person}", "t1", "a tabby")]
        assert [m["text"] for m in v.screen.values() if m.get("own")] == ["a tabby"]


async def test_forged_replayed_and_other_peoples_presses_change_nothing(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann, item = await one_answerer(b)
        bob, bobs = await one_answerer(b)
        assert item["text"] == bobs["text"] == "Animal number 1"  # overlap 2: the same item
        for data in ("a:999999:0", "zzz", "a:1:99", "u:424242", "x:7", ""):
            assert (await ann.post("/api/press", {"ref": item["ref"], "data": data}))[0] == 200
        # Bob presses Ann's button (her data, her message's ref).
        cat = buttons(item)[0]["data"]
        assert (await bob.post("/api/press", {"ref": item["ref"], "data": cat}))[0] == 200
        await bob.wait_for(lambda: bob.toasts)
        assert bob.toasts == [EN("press.not_yours")]
        await ann.wait_for(lambda: len(ann.toasts) == 6)
        # Each gets a polite answer: a dead button, nothing to undo, not for annotators.
        expected = {EN("press.dead"), EN("press.nothing_to_undo"), EN("command.not_allowed")}
        assert set(ann.toasts) == expected
        assert await b.answers() == []
        assert ann.screen[item["ref"]] == item and bob.screen[bobs["ref"]] == bobs

        # Ann's real press counts; the same press again (a replay) is only acknowledged.
        assert await ann.press(item, "cat") == 200
        await ann.wait_for(lambda: ann.screen[item["ref"]]["status"] == "✅ cat")
        assert (await ann.post("/api/press", {"ref": item["ref"], "data": cat}))[0] == 200
        await ann.wait_for(lambda: ann.toasts[-1] == EN("press.already_recorded"))
        assert await b.answers() == [(f"web:{ann.person}", "t1", "cat")]
        # Bob's own copy is still open and still his; sent with Ann's message as its ref, his
        # press counts for him, and the ref is taken for what it is: not his message.
        dog = buttons(bobs)[1]["data"]
        assert (await bob.post("/api/press", {"ref": item["ref"], "data": dog}))[0] == 200
        await bob.wait_for(lambda: bob.screen[bobs["ref"]]["status"] == "✅ dog")
        assert ann.screen[item["ref"]]["status"] == "✅ cat"
        assert sorted(await b.answers()) == sorted(
            [(f"web:{ann.person}", "t1", "cat"), (f"web:{bob.person}", "t1", "dog")]
        )


async def test_posts_beyond_the_rate_are_refused(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        v, item = await one_answerer(b)
        forged = {"ref": None, "data": "a:999999:0"}
        statuses = await asyncio.gather(*(v.post("/api/press", forged) for _ in range(40)))
        codes = [s for s, _ in statuses]
        assert codes.count(429) >= 15 and codes.count(200) >= 15


async def test_only_the_configured_address_is_listened_on(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        runner = b.transport._runner
        assert runner is not None
        bound = [s.getsockname()[0] for site in runner.sites for s in site._server.sockets]  # type: ignore[attr-defined]
        assert bound == ["127.0.0.1"]


# -- media and files ----------------------------------------------------------------------------


async def test_media_is_served_only_to_the_person_it_was_shown_to(tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    Image.new("RGB", (2000, 1000), (200, 100, 50)).save(picture)
    sound = tmp_path / "meow.ogg"
    sound.write_bytes(b"OggS\x00\x02" + os.urandom(200_000))
    rows = [
        {"id": "p1", "text": "A picture", "media_kind": "image", "media_path": str(picture)},
        {"id": "s1", "text": "A sound", "media_kind": "audio", "media_path": str(sound)},
        {"id": "m1", "text": "Gone", "media_kind": "image", "media_path": str(tmp_path / "x.jpg")},
    ]
    async with running_web(tmp_path) as b:
        await b.add_items("animals", rows)
        v, item = await one_answerer(b)
        media = item["media"]
        assert media["kind"] == "image" and media["url"].startswith("/media/")
        assert (media["width"], media["height"]) == (1280, 640)  # prepared: shrunk once
        async with v.http.get(b.base + media["url"]) as r:
            assert r.status == 200 and r.content_type == "image/jpeg"
            assert r.headers["Cross-Origin-Resource-Policy"] == "same-origin"
            data = await r.read()
        prepared = list((tmp_path / "cache").glob("*.jpg"))
        assert len(prepared) == 1 and prepared[0].read_bytes() == data
        stranger = await b.visitor()
        async with stranger.http.get(b.base + media["url"]) as r:
            assert r.status == 404
        async with aiohttp.ClientSession(trust_env=False) as anonymous:
            async with anonymous.get(b.base + media["url"]) as r:
                assert r.status == 404
            for path in ("/media/..%2F..%2Fchatlabel.db", "/media/" + str(picture), "/files/x"):
                async with anonymous.get(b.base + path) as r:
                    assert r.status == 404, path
            async with anonymous.get(b.base + "/static/..%2Fweb.py") as r:
                assert r.status == 404

        assert await v.press(item, "cat") == 200
        sound_item = (
            await v.wait_for(lambda: [m for m in v.open_items() if m["text"] == "A sound"])
        )[0]
        assert sound_item["media"]["kind"] == "audio"
        # Streamed from disk with ranges: a player asks for a part and gets just that.
        url = b.base + sound_item["media"]["url"]
        async with v.http.get(url, headers={"Range": "bytes=100-199"}) as r:
            assert r.status == 206 and r.content_type == "audio/ogg"
            assert await r.read() == sound.read_bytes()[100:200]

        # A missing file: the item is never offered without it (it would be answered blind):
        # it is skipped for them, and there is nothing left.
        assert await v.press(sound_item, "dog") == 200
        await v.wait_for(lambda: v.last_text() == EN("idle.no_work"))
        assert not [m for m in v.messages() if m["text"].startswith("Gone")]
        assert not v.open_items()


async def test_a_coordinator_downloads_the_chart_and_the_export(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        boss = await b.visitor(person=COORDINATOR)
        assert [c["name"] for c in boss.session["commands"]][-1] == "routing"
        plain = await b.visitor()
        assert "progress" not in [c["name"] for c in plain.session["commands"]]
        assert await boss.type("/progress") == 200
        chart = (await boss.wait_for(lambda: [m for m in boss.messages() if m["chart"]]))[0]
        assert chart["text"].startswith("📈 Animals")
        async with boss.http.get(b.base + chart["chart"]["url"]) as r:
            assert r.status == 200 and r.content_type == "image/png"
            assert (await r.read())[:8] == b"\x89PNG\r\n\x1a\n"
        assert await boss.type("/export") == 200
        doc = (await boss.wait_for(lambda: [m for m in boss.messages() if m.get("file")]))[0]
        assert doc["file"]["name"] == "animals-results.csv"
        async with boss.http.get(b.base + doc["file"]["url"]) as r:
            assert r.status == 200
            assert (
                r.headers["Content-Disposition"]
                == "attachment; filename*=UTF-8''animals-results.csv"
            )
            assert await r.read() == b"item,label\nt1,cat\n"
        async with plain.http.get(b.base + doc["file"]["url"]) as r:
            assert r.status == 404
        # Someone else's /progress is refused, as everywhere.
        assert await plain.type("/progress") == 200
        await plain.wait_for(lambda: plain.last_text() == EN("command.not_allowed"))


# -- live delivery ------------------------------------------------------------------------------


async def test_a_reconnect_gets_exactly_what_was_missed(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        v, item = await one_answerer(b)
        seen = dict(v.screen)
        last = v.last_id
        await v.disconnect()  # the phone goes through a tunnel
        assert await v.press(item, "cat") == 200  # the post got through; the stream did not
        assert await v.type("/stats") == 200
        assert v.screen == seen
        v.events.clear()
        await v.connect(last)
        ops = [e["op"] for e in v.events]
        assert "reset" not in ops and ops[-1] == "ready"
        assert ops[:-1] == ["edit", "add", "add", "add"]  # answered, next item, own, /stats
        assert v.screen[item["ref"]]["status"] == "✅ cat"
        assert v.items()[-1]["text"] == "Animal number 2"
        # A stream from before a restart (another boot) or too far behind starts over.
        v.events.clear()
        await v.connect("0123abcd-3")
        assert v.events[0]["op"] == "reset" and v.events[-1] == {"op": "ready", "fresh": False}
        assert [e["msg"]["ref"] for e in v.events[1:-1]] == list(v.screen)


async def test_a_persons_screen_and_backlog_stay_bounded(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        v = await b.visitor()
        outlet = b.transport.outlet
        user = UserRef("web", v.person)
        for n in range(web_outlet.LOG + 50):
            await outlet.send(user, Message(f"note {n}"))
        inbox = outlet.inbox(user.key)
        assert len(inbox.log) == web_outlet.LOG and len(inbox.shown) == web_outlet.SHOWN
        await v.wait_for(lambda: v.last_text() == f"note {web_outlet.LOG + 49}")
        v.events.clear()
        await v.connect(f"{outlet.boot}-1")  # further back than the log reaches
        assert v.events[0]["op"] == "reset"
        assert len(v.screen) == web_outlet.SHOWN
        assert v.messages()[0]["text"] == f"note {web_outlet.LOG + 50 - web_outlet.SHOWN}"


async def test_a_push_reaches_an_open_page_in_the_persons_language(tmp_path: Path) -> None:
    async with running_web(tmp_path) as b:
        v = await b.visitor("es-ES,es;q=0.9,en;q=0.5")
        await v.start()
        es = Catalog().texts("es")
        await v.wait_for(lambda: v.last_text() == es("idle.no_work"))
        await b.add_items("animals", ITEMS[:1])  # new work: the push loop sends it unasked
        item = (await v.wait_for(v.open_items))[0]
        assert item["text"] == "Animal number 1"
        assert captions(item)[-2:] == [es("item.skip"), es("item.report")]
        # /language overrides the browser's language, as on every platform.
        assert await v.type("/language pt") == 200
        pt = Catalog().texts("pt")
        await v.wait_for(lambda: v.last_text() == pt("language.set"))
        assert await b.query("SELECT language FROM annotators") == [("pt",)]


# -- the parts ----------------------------------------------------------------------------------


async def test_the_secret_is_made_once_private_and_sessions_survive_a_restart(
    tmp_path: Path,
) -> None:
    async with running_web(tmp_path, secret=None) as b:
        v = await b.visitor()
        cookie = next(c.value for c in v.http.cookie_jar)
    path = tmp_path / "chatlabel.web-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    async with running_web(tmp_path, secret=None) as b:
        again = Visitor(b.base)
        b.visitors.append(again)
        again.set_cookie(b.transport.cookie_name, cookie)
        assert (await again.open())["expired"] is False
        assert again.person == cookie.split(".")[0]
    path.chmod(0o644)
    assert load_secret(None, path) == path.read_text().strip().encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sessions_origins_and_languages() -> None:
    s = Sessions(b"k" * 32, lifetime=100)
    cookie = s.cookie("abcdefghijklmnop", 1000)
    assert s.check(cookie, 1050) is not None and s.check(cookie, 1101) is None
    assert s.check(cookie.replace("abcdefghijklmnop", "abcdefghijklmnoq"), 1050) is None
    assert Sessions(b"x" * 32, 100).check(cookie, 1050) is None  # another secret
    assert s.check(cookie, 600) is None  # issued in the future
    assert s.csrf_ok("abcdefghijklmnop", s.csrf("abcdefghijklmnop"))
    assert not s.csrf_ok("abcdefghijklmnop", s.csrf("bbcdefghijklmnop"))
    o = Origins("127.0.0.1", "https://label.example.org")
    assert o.host_ok("127.0.0.1:8080") and o.host_ok("label.example.org")
    assert o.host_ok("[::1]:8080") and not o.host_ok("evil.example:8080")
    assert not o.host_ok("10.0.0.5:8080")  # an address we do not listen on
    assert Origins("0.0.0.0", "").host_ok("192.168.1.20:8080")  # the LAN, by address
    assert not Origins("0.0.0.0", "").host_ok("rebound.example")
    assert o.origin_ok("https://label.example.org", "127.0.0.1:8080", "http")
    assert o.origin_ok("http://127.0.0.1:8080", "127.0.0.1:8080", "http")
    assert not o.origin_ok("http://127.0.0.1:9", "127.0.0.1:8080", "http")
    assert not o.origin_ok("null", "127.0.0.1:8080", "http")
    assert languages("es-ES,es;q=0.9,en;q=0.8") == ["es-ES", "es", "en"]
    assert languages("en;q=0.1, uk, ru;q=0.5, *;q=0.3, de;q=0") == ["uk", "ru", "en"]
    assert languages("x" * 5000) == [] and languages(None) == []


async def test_the_page_and_its_files(tmp_path: Path) -> None:
    settings = Web(port=0, base_url="https://label.example.org")
    async with running_web(tmp_path, settings=settings) as b:
        assert b.transport.cookie_name == "__Host-chatlabel" and b.transport.secure
        assert b.transport.links() == ["https://label.example.org/"]
        async with aiohttp.ClientSession(trust_env=False) as http:
            async with http.get(b.base + "/", headers={"Accept-Language": "uk"}) as r:
                page = await r.text()
            assert '<html lang="uk">' in page and Catalog().texts("uk")("web.send") in page
            static = [p for p in page.split('"') if p.startswith("/static/")]
            assert len(static) == 3 and all("?v=" in p for p in static)
            for p in static:
                async with http.get(b.base + p) as r:
                    assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
            async with http.post(
                b.base + "/api/session", json={}, headers={"Origin": "https://label.example.org"}
            ) as r:
                assert r.status == 200 and "Secure" in r.headers["Set-Cookie"]
    access = {"mode": "invite", "invite_codes": ["spring a b", "zzzzzzzz"]}
    async with running_web(tmp_path / "2", access=access) as b:
        assert b.transport.links() == [
            f"http://127.0.0.1:{b.transport.port}/join/spring%20a%20b",
            f"http://127.0.0.1:{b.transport.port}/join/zzzzzzzz",
        ]


def test_chatlabel_invite_prints_the_web_link(tmp_path: Path) -> None:
    config = tmp_path / "chatlabel.toml"
    config.write_text(
        "[[project]]\nname = 'p'\nlabels = ['a', 'b']\n[web]\nbase_url = 'https://l.example.org/'\n"
    )
    result = CliRunner().invoke(main, ["invite", str(config)])
    assert result.exit_code == 0, result.output
    code = re.search(r"Invite code: (\S+)", result.output)
    assert code is not None
    assert f"Web link: https://l.example.org/join/{code.group(1)}" in result.output


async def test_a_confident_suggestion_is_one_check_on_the_web_too(tmp_path: Path) -> None:
    """The check flow is the shared conversation's: the web chat shows a yes/no check too."""
    routed = project(model={"kind": "import", "auto_threshold": 0.9, "audit_rate": 0.0})
    async with running_web(tmp_path, [routed]) as b:
        rows = [{"id": "c1", "text": "Meow.", "suggestion": "cat", "suggestion_score": 0.97}]
        await import_file(b.service, "animals", write_jsonl(tmp_path / "items.jsonl", rows))
        v, item = await one_answerer(b)
        assert item["text"].startswith("Meow.\n\nSuggested: cat — is this right?")
        assert captions(item) == ["✅ Yes", "❌ No", "Skip", "Report"]
        await v.press(item, "✅ Yes")
        await v.wait_for(lambda: not v.open_items())
        assert await b.query("SELECT status, route FROM items") == [("resolved", "verified")]
        assert await b.query("SELECT label, method FROM verdicts") == [("cat", "check")]
