"""Security probes from the hardening review (issue 10), run against the real bots.

CSV injection in exports, gold gaming with Undo, forged webhook updates, non-ASCII auth headers
and invite-code guessing: each probe is the attack as it was tried, and what must happen instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from chatlabel import exporter
from chatlabel.service.types import UserRef
from tests.telegram_harness import is_item, new_message, next_item, project, running_bot

pytestmark = pytest.mark.timeout(30)

# -- CSV injection --------------------------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("http://x/?"&A1,"x")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "=1\x1b[31mred",
    "esc \x1b[2J in the middle",
    "csi \x9b and del \x7f and bell \x07",
    "plain answer, with a comma",
    "multi\nline = fine",
]
IDS = ["=1+1", "@id", "\t=2", "\r=3", "id\x1bwith-esc", "-7", "+x", "ok-id"]
NAMES = ["=cmd|' /C calc'!A0", "@Mallory", "\x1b]0;owned\x07Eve"]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def assert_spreadsheet_safe(text: str) -> list[list[str]]:
    """Every cell of a CSV export is inert in a spreadsheet; returns the parsed rows."""
    assert not _CONTROL.search(text), "a control character reached the CSV file"
    rows = list(csv.reader(io.StringIO(text, newline="")))
    for row in rows:
        for cell in row:
            if cell and cell[0] in "=+-@\t\r":
                assert _NUMBER.fullmatch(cell), f"live formula in CSV: {cell!r}"
    return rows


async def test_csv_exports_defuse_formulas_and_control_characters_jsonl_stays_exact(
    tmp_path: Path,
) -> None:
    notes = project("notes", kind="text", labels=[], overlap=1, max_overlap=1)
    async with running_bot(tmp_path, [notes]) as b:
        n_items = len(FORMULAS) + len(IDS)
        ids = IDS + [f"t{n}" for n in range(n_items - len(IDS))]
        await b.add_items("notes", [{"id": i, "text": f"Item {n}"} for n, i in enumerate(ids)])
        answers = FORMULAS + [f"answer {n}" for n in range(n_items - len(FORMULAS))]
        people = [b.user(100 + n, name) for n, name in enumerate(NAMES)]
        sent: dict[str, str] = {}  # item text -> answer
        for n, text in enumerate(answers):
            user = people[n % len(people)]
            if n < len(people):
                item = await b.start(user)
            else:
                item = await next_item(user, user.messages[-1].message_id - 2)
            last = user.messages[-1].message_id
            sent[item.content.split("\n\n")[0]] = text
            await user.send(text)
            await new_message(
                user, last, lambda m: "Item" in m.content or "everything" in m.content
            )
        assert len(await b.answers()) == n_items

        async def export(what: Any, fmt: Any) -> str:
            out = io.StringIO()
            await exporter.write(b.service, "notes", what, fmt, out)
            return out.getvalue()

        # JSONL stays exact: the values as they were written.
        jsonl = [json.loads(line) for line in (await export("answers", "jsonl")).splitlines()]
        assert sorted(r["label"] for r in jsonl) == sorted(answers)
        assert sorted(r["item_id"] for r in jsonl) == sorted(ids)
        people_jsonl = [json.loads(x) for x in (await export("annotators", "jsonl")).splitlines()]
        assert sorted(r["name"] for r in people_jsonl) == sorted(NAMES)
        # Comments on items are outside text too.
        given = await b.query(
            """SELECT a.key, x.assignment_id FROM answers x
               JOIN annotators a ON a.id = x.annotator_id ORDER BY x.id"""
        )
        for (key, aid), formula in zip(given, FORMULAS, strict=False):
            platform, _, uid = key.partition(":")
            said = await b.service.comment(UserRef(platform, uid), formula, assignment_id=aid)
            assert said.status == "saved"
        # CSV is inert, and says the same thing once the ' and the \xNN are read back.
        tried = 0
        for what in ("results", "answers", "annotators", "reports"):
            rows = assert_spreadsheet_safe(await export(what, "csv"))
            tried += sum(len(r) for r in rows)
        answers_csv = assert_spreadsheet_safe(await export("answers", "csv"))[1:]
        by_id = {r[0]: r[2] for r in answers_csv}
        # A CR is a line break in CSV (Python's writer would not quote a field for it).
        assert by_id["'=1+1"] and by_id["'@id"] and by_id["'\t=2"] and by_id["'\n=3"]
        assert "id\\x1bwith-esc" in by_id and "-7" in by_id and "'+x" in by_id
        values = sorted(r[2] for r in answers_csv)
        assert '\'=HYPERLINK("http://x/?"&A1,"x")' in values
        assert "'=1\\x1b[31mred" in values and "-2+3" not in values and "'-2+3" in values
        assert "esc \\x1b[2J in the middle" in values
        assert "csi \\x9b and del \\x7f and bell \\x07" in values
        assert "plain answer, with a comma" in values and "multi\nline = fine" in values
        comments = {r[9] for r in answers_csv}
        assert '\'=HYPERLINK("http://x/?"&A1,"x")' in comments and "'@SUM(A1:A9)" in comments
        names = {r[1] for r in assert_spreadsheet_safe(await export("annotators", "csv"))[1:]}
        assert names == {"'=cmd|' /C calc'!A0", "'@Mallory", "\\x1b]0;owned\\x07Eve"}
        assert tried > 100
        print(
            f"\nCSV injection: {len(FORMULAS)} answers, {len(IDS)} item ids, {len(NAMES)} names; "
            f"{tried} CSV cells checked in 3 exports, none live"
        )


# -- gold gaming with Undo ------------------------------------------------------------------------


async def test_undo_after_gold_feedback_never_changes_the_score(tmp_path: Path) -> None:
    """The probe: answer each qualification gold item wrong, read the right answer in the
    feedback, Undo, answer it right. It made a 100 % gold score out of four misses."""
    strict = project(
        undo_seconds=60,
        lease_seconds=600,
        # The absolute gate: the fixed 70 % bar is the one the notice names.
        quality={
            "qualification": 4,
            "min_gold_accuracy": 0.7,
            "gate": "absolute",
            "gold_feedback": True,
        },
    )
    gold = [{"id": f"g{n}", "text": f"Gold item {n}.", "gold": "cat"} for n in range(4)]
    plain = [{"id": f"t{n}", "text": f"Plain item {n}."} for n in range(4)]
    async with running_bot(tmp_path, [strict]) as b:
        await b.add_items("animals", gold + plain)
        ann = b.user(1, "Gamer")
        item = await b.start(ann)
        shown_gold: list[str] = []
        for n in range(4):
            text = item.content
            assert text.startswith("Gold item"), text
            shown_gold.append(text)
            await ann.press(item, "dog")  # wrong
            # The missed item itself shows the right answer, with Undo under it.
            await ann.wait_for(lambda i=item: "The expected answer was: cat" in i.content)  # type: ignore[misc]
            if n == 3:
                break  # 0 of 4 right: not admitted, so no Undo (before: 3 of 4, and Undo)
            nxt = await next_item(ann, item.message_id)
            await ann.press(item, "↩️ Undo")  # Undo is still offered, as for any item
            # Back where it was, buttons and all; the newer item is withdrawn for now.
            await ann.wait_for(lambda i=item, t=text: i.content == t and is_item(i))  # type: ignore[misc]
            await ann.wait_for(lambda m=nxt: m.deleted)  # type: ignore[misc]
            await ann.press(item, "cat")  # right, now that they know
            item = await next_item(ann, nxt.message_id)
        notice = await new_message(ann, item.message_id, lambda m: "⛔" in m.content)
        assert "70%" in notice.content
        assert sorted(shown_gold) == sorted(f"Gold item {n}." for n in range(4))
        # The first answers are the score: 0 of 4, not 4 of 4.
        assert await b.query(
            "SELECT gold_answers, gold_correct, qual_answers, qual_correct, status FROM members"
        ) == [(4, 0, 4, 0, "suspended")]
        # Undo changed the recorded label (shown in exports), never the scoring.
        rows = await b.query("SELECT value, correct FROM answers ORDER BY id")
        assert rows == [("cat", 0)] * 3 + [("dog", 0)]
        # Each gold item was leased to them once, and never comes back, even after its lease.
        assert await b.query(
            "SELECT i.ext_id, COUNT(*) FROM assignments s JOIN items i ON i.id = s.item_id "
            "WHERE i.gold IS NOT NULL GROUP BY i.id ORDER BY i.ext_id"
        ) == [(f"g{n}", 1) for n in range(4)]


async def test_a_gold_item_undone_and_left_is_never_offered_again(tmp_path: Path) -> None:
    lenient = project(
        undo_seconds=60,
        lease_seconds=60,
        quality={"qualification": 1, "min_gold_accuracy": 0.0, "gold_feedback": True},
    )
    rows = [{"id": "g0", "text": "Gold item.", "gold": "cat"}]
    rows += [{"id": f"t{n}", "text": f"Plain item {n}."} for n in range(3)]
    async with running_bot(tmp_path, [lenient]) as b:
        await b.add_items("animals", rows)
        ann = b.user(1)
        item = await b.start(ann)
        assert item.content == "Gold item."
        await ann.press(item, "dog")
        plain = await next_item(ann, item.message_id)
        await ann.press(item, "↩️ Undo")
        await ann.wait_for(lambda: item.content == "Gold item." and is_item(item))
        await ann.wait_for(lambda: plain.deleted)
        again = item
        # They walk away; the lease runs out and the pool moves on.
        b.clock.advance(61)
        await ann.send("/start")
        seen = []
        last = again.message_id
        for _ in range(3):
            nxt = await next_item(ann, last)
            seen.append(nxt.content)
            await ann.press(nxt, "bird")
            last = nxt.message_id
        done = await new_message(ann, last, lambda m: "everything for now" in m.content)
        assert done and seen == [f"Plain item {n}." for n in range(3)]
        assert await b.query("SELECT gold_answers, gold_correct FROM members") == [(1, 0)]
        assert await b.query(
            "SELECT COUNT(*) FROM assignments s JOIN items i ON i.id = s.item_id WHERE i.gold IS NOT NULL"
        ) == [(1,)]


# -- forged Telegram updates ----------------------------------------------------------------------

ANIMALS = [{"id": f"t{n}", "text": f"Animal sound number {n}."} for n in range(1, 7)]


async def test_updates_whose_private_chat_is_not_the_senders_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe: `from` = the coordinator, `chat` = the attacker's chat, text /export. The
    export went to the attacker. Same with a victim's button, /start and 'blocked the bot'."""
    import copy

    from tests.telegram_harness import COORDINATOR_ID

    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ANIMALS)
        boss = b.user(COORDINATOR_ID, "Boss")
        victim = b.user(1, "Victim")
        mallory = b.user(666, "Mallory")
        victim_item = await b.start(victim)
        await b.start(mallory)
        before_members = await b.query("SELECT * FROM annotators ORDER BY id")
        before_answers = await b.query("SELECT COUNT(*) FROM answers")
        mallory_seen = len(mallory.messages)

        own = (await mallory.send("/export")).to_json()
        await new_message(mallory, mallory.messages[-1].message_id)  # refused: not theirs
        mallory_seen = len(mallory.messages)
        export = copy.deepcopy(own)
        export["from"] = boss.user_json  # the coordinator's name, the attacker's chat
        start = copy.deepcopy(own) | {"text": "/start"}
        start["from"] = victim.user_json
        start["entities"] = [{"type": "bot_command", "offset": 0, "length": 6}]
        press = {
            "id": "999000111",
            "from": victim.user_json,
            "message": mallory.messages[-2].to_json(),  # a message in the attacker's chat
            "chat_instance": "1",
            "data": victim_item.buttons[0]["callback_data"],
        }
        kicked = {
            "chat": mallory.chat.to_json(),
            "from": victim.user_json,
            "date": 0,
            "old_chat_member": {"user": b.emu.bot_user, "status": "member"},
            "new_chat_member": {"user": b.emu.bot_user, "status": "kicked", "until_date": 0},
        }
        # A group chat: the bot labels only in private chats.
        group = copy.deepcopy(own) | {"chat": {"id": -100123, "type": "group", "title": "g"}}
        group["from"] = boss.user_json
        caplog.clear()
        forged = [
            b.emu.inject_update({"message": export}),
            b.emu.inject_update({"message": start}),
            b.emu.inject_update({"callback_query": press}),
            b.emu.inject_update({"my_chat_member": kicked}),
        ]
        b.emu.inject_update({"message": group})  # filtered out before any handler: not logged
        await boss.send("/progress")  # a real update after them: the forged ones were handled
        await boss.wait_for(lambda: any("Animals" in m.content for m in boss.messages))
        await victim.wait_for(lambda: not b.emu.pending_updates)
        assert b.emu.calls_to("sendDocument") == []
        assert all(
            str(c.params.get("chat_id")) == str(COORDINATOR_ID) for c in b.emu.calls_to("sendPhoto")
        )
        assert len(mallory.messages) == mallory_seen, [m.content for m in mallory.messages]
        assert not [
            m for m in victim.messages if is_item(m) and m.message_id > victim_item.message_id
        ]
        assert await b.query("SELECT * FROM annotators ORDER BY id") == before_members
        assert await b.query("SELECT COUNT(*) FROM answers") == before_answers
        dropped = [r.getMessage() for r in caplog.records if "dropped update" in r.getMessage()]
        assert len(dropped) == len(forged), dropped
        assert all(f"dropped update {u}:" in d for u, d in zip(forged, dropped, strict=True))


async def raw_post(url: str, headers: dict[str, bytes], body: bytes) -> int:
    """POST with header values sent as these exact bytes (clients would encode them); the status."""
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
        for name, value in headers.items():
            head += name.encode() + b": " + value + b"\r\n"
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


async def hooked_bot(b: Any, port: int, secret_env: str) -> Any:
    """The bench's service behind a webhook on 127.0.0.1:port (the polling bot stopped)."""
    from chatlabel.config import Telegram
    from chatlabel.transports.telegram import TelegramTransport

    await b.transport.stop()
    settings = Telegram(
        base_url=b.emu.base_url,
        mode="webhook",
        webhook_url="https://bot.example.org/telegram/hook",  # public, behind a TLS proxy
        webhook_port=port,
        secret_token_env=secret_env,
    )
    hooked = TelegramTransport(
        b.service, b.reports, settings, b.emu.token, media_cache=b.tmp / "cache"
    )
    await hooked.start()
    return hooked


HOSTILE_SECRETS: list[bytes] = [
    b"",
    b"wrong",
    "sëcret".encode(),
    "пароль".encode(),
    "🔑".encode(),
    b"\xff\xfe\xfd",  # not UTF-8 at all
    b"\xc3",  # a cut UTF-8 sequence
    "ｓ３ｃｒｅｔ".encode(),  # fullwidth look-alikes
]


async def test_webhook_mode_never_runs_without_a_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unused_tcp_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:

    monkeypatch.delenv("TG_UNSET_SECRET", raising=False)
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ANIMALS)
        hooked = await hooked_bot(b, unused_tcp_port, "TG_UNSET_SECRET")
        try:
            registered = b.emu.webhook
            assert registered is not None
            secret = registered["secret_token"]
            assert isinstance(secret, str) and re.fullmatch(r"[A-Za-z0-9_-]{40,256}", secret)
            warned = [r.getMessage() for r in caplog.records if "TG_UNSET_SECRET" in r.getMessage()]
            assert warned and "generated one" in warned[0] and secret not in " ".join(warned)
            ann = b.user(1)
            await ann.send("/start")
            [update] = b.emu.pending_updates  # nobody polls: we deliver it as Telegram would
            local = f"http://127.0.0.1:{unused_tcp_port}/telegram/hook"
            body = json.dumps(update).encode()
            json_type = {"Content-Type": b"application/json"}
            statuses = [await raw_post(local, json_type, body)]  # no secret header at all
            for bad in HOSTILE_SECRETS:
                headers = {**json_type, "X-Telegram-Bot-Api-Secret-Token": bad}
                statuses.append(await raw_post(local, headers, body))
            assert statuses == [403] * (1 + len(HOSTILE_SECRETS))
            assert not ann.messages  # nothing got through
            headers = {**json_type, "X-Telegram-Bot-Api-Secret-Token": secret.encode()}
            assert await raw_post(local, headers, body) == 200
            item = await next_item(ann)
            assert item.content == "Animal sound number 1."
            assert not [r for r in caplog.records if r.levelname == "ERROR"]
        finally:
            await hooked.stop()


async def test_non_ascii_secret_headers_are_refused_without_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unused_tcp_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:

    monkeypatch.setenv("TG_HOOK_SECRET", "s3cret_token-1")
    async with running_bot(tmp_path) as b:
        hooked = await hooked_bot(b, unused_tcp_port, "TG_HOOK_SECRET")
        try:
            local = f"http://127.0.0.1:{unused_tcp_port}/telegram/hook"
            update = {"update_id": 1, "message": {"message_id": 1, "date": 0,
                      "chat": {"id": 5, "type": "private"}, "from": {"id": 5, "is_bot": False,
                      "first_name": "E"}, "text": "hi"}}  # fmt: skip
            # Near misses of the real secret too: a non-ASCII letter in it, or after it.
            near = ["s3crët_token-1".encode(), "s3cret_token-1é".encode(), b"s3cret_token-1\xff"]
            body = json.dumps(update).encode()
            for bad in HOSTILE_SECRETS + near:
                headers = {
                    "Content-Type": b"application/json",
                    "X-Telegram-Bot-Api-Secret-Token": bad,
                }
                assert await raw_post(local, headers, body) == 403, bad
        finally:
            await hooked.stop()
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


async def test_slack_non_ascii_signatures_are_a_plain_401(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import contextlib
    import time

    from chatlabel.emulators.slack_user import sign
    from tests.slack_harness import make_bot
    from tests.slack_harness import project as slack_project

    async with contextlib.AsyncExitStack() as stack:
        bot = await make_bot(stack, tmp_path, slack_project())
        url, secret, _ = bot.emu.bot_endpoint()
        body = b"command=%2Flabel&text=&user_id=U1&team_id=T1&channel_id=D1&trigger_id=x"
        now = str(int(time.time()))
        real = sign(secret, now, body)
        signatures = HOSTILE_SECRETS + [
            (real[:-1] + "é").encode(),
            ("v0=" + "é" * 64).encode(),
            real.encode() + b"\xff",
            ("\u0100" * 10).encode(),
        ]
        calls_before = len(bot.emu.calls)
        for signature in signatures:
            headers = {
                "X-Slack-Request-Timestamp": now.encode(),
                "X-Slack-Signature": signature,
                "Content-Type": b"application/x-www-form-urlencoded",
            }
            assert await raw_post(url, headers, body) == 401, signature
        assert len(bot.emu.calls) == calls_before  # the bot made no call at all
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


# -- invite codes ---------------------------------------------------------------------------------

CODE = "sesame-street-42"


async def test_invite_codes_cannot_be_brute_forced(tmp_path: Path) -> None:
    """The probe: 300 guesses in 9 s, then in. Now five wrong codes lock a person out for ten
    minutes, even from the right code, and the bot says why."""
    from chatlabel.conversation import Catalog

    t = Catalog().texts("en")

    access = {"mode": "invite", "invite_codes": [CODE]}
    async with running_bot(tmp_path, access=access) as b:
        await b.add_items("animals", ANIMALS)
        mallory = b.user(666, "Mallory")
        guesses = [f"guess-{n:04d}" for n in range(59)]
        guesses.insert(29, CODE)  # the right one, found on the 30th try
        told = []
        for guess in guesses:
            last = mallory.messages[-1].message_id if mallory.messages else 0
            await mallory.send(f"/start {guess}")
            told.append((await new_message(mallory, last)).content)
        assert len(told) == 60
        assert told[:5] == [t("join.invite_only")] * 5
        assert told[5:] == [t("join.too_many_attempts")] * 55
        assert "Too many wrong invite codes" in told[-1]
        assert await b.query("SELECT COUNT(*) FROM members") == [(0,)]
        # Someone else is not affected, and Mallory may try again after ten minutes.
        assert is_item(await b.start(b.user(7, "Friend"), CODE))
        b.clock.advance(601)
        assert is_item(await b.start(mallory, CODE))


async def test_invite_guesses_spread_over_many_accounts_hit_the_overall_limit(
    service_factory: Any, clock: Any
) -> None:
    from chatlabel.service.types import UserRef

    svc = await service_factory(access={"mode": "invite", "invite_codes": [CODE, "other-code-9"]})
    member = UserRef("telegram", "1")
    assert (await svc.join(member, CODE)).status == "joined"
    odd = ["", "sesame street 42", "sesame-street-4", "SESAME-STREET-42", "sesame-street-42x", "sésame-street-42",
           "sesame\u2010street-42", "\udcff", "🔑" * 30, "x" * 5000]  # fmt: skip
    tried = 0
    for n in range(25):  # 25 accounts, 4 guesses each: 100 failures in all
        for guess in odd[n % 6 : n % 6 + 4]:
            res = await svc.join(UserRef("telegram", f"{100 + n}"), guess or f"blank-{n}")
            assert res.status == "refused" and res.refusal == "invite_only", (n, guess)
            tried += 1
    assert tried == 100
    newcomer = UserRef("telegram", "999")
    res = await svc.join(newcomer, CODE)
    assert res.status == "refused" and res.refusal == "too_many_attempts"
    # People already in are not locked out by strangers' guesses.
    assert (await svc.join(member)).status == "joined"
    assert (await svc.join(member, CODE)).status == "joined"
    clock.advance(601)
    assert (await svc.join(newcomer, "other-code-9")).status == "joined"


def test_short_invite_codes_are_refused_by_the_config(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chatlabel.cli import main
    from chatlabel.config import ConfigError, load_config

    cfg = tmp_path / "chatlabel.toml"
    cfg.write_text(
        '[[project]]\nname = "p"\nlabels = ["a", "b"]\n\n'
        '[access]\nmode = "invite"\ninvite_codes = ["long-enough-1", "s3cret"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    message = str(caught.value)
    assert message.startswith(f"{cfg}: access.invite_codes: invite code 2 has 6 characters")
    assert "at least 8" in message
    r = CliRunner().invoke(main, ["status", str(cfg)])
    assert r.exit_code == 1 and "access.invite_codes" in r.output


def test_chatlabel_invite_prints_a_strong_code_and_its_link(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chatlabel.cli import main
    from chatlabel.config import load_config

    cfg = tmp_path / "chatlabel.toml"
    base = (
        '[[project]]\nname = "p"\nlabels = ["a", "b"]\n\n[[project]]\nname = "q"\n'
        'labels = ["a", "b"]\n\n[telegram]\nbot_username = "@label_helper_bot"\n'
    )
    cfg.write_text(base, encoding="utf-8")
    runner = CliRunner()
    codes = set()
    for _ in range(20):
        r = runner.invoke(main, ["invite", str(cfg), "--project", "q"])
        assert r.exit_code == 0, r.output
        code = re.search(r"^Invite code: (\S+)$", r.output, re.M)
        assert code is not None
        codes.add(code[1])
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", code[1])  # 128 bits, deep-link safe
        assert f"https://t.me/label_helper_bot?start={code[1]}" in r.output
        assert f'invite_codes = ["{code[1]}"]' in r.output and "chooses q" in r.output
    assert len(codes) == 20
    r = runner.invoke(main, ["invite", str(cfg), "--project", "q", "--bot", "other_bot"])
    assert "https://t.me/other_bot?start=" in r.output
    r = runner.invoke(main, ["invite", str(cfg), "--project", "nope"])
    assert r.exit_code == 1 and "no project named 'nope'" in r.output
    # The printed code is accepted as it is printed.
    cfg.write_text(base + f'\n[access]\nmode = "invite"\ninvite_codes = ["{codes.pop()}"]\n')
    assert load_config(cfg).access.mode == "invite"


def test_the_attempt_limiter_stays_bounded_whoever_guesses() -> None:
    from chatlabel.mechanics import AttemptLimiter

    limiter = AttemptLimiter(per_person=5, overall=10**9, window=600, max_people=1000)
    for _ in range(4):
        limiter.failed("telegram:1", 0.0)
    for n in range(100_000):  # strangers, one guess each
        limiter.failed(f"telegram:{1000 + n}", 1.0)
    assert len(limiter._people) == 1000
    # The oldest were forgotten first: person 1's four failures are gone.
    limiter.failed("telegram:1", 2.0)
    assert not limiter.locked("telegram:1", 2.0)
    for _ in range(4):
        limiter.failed("telegram:1", 3.0)
    assert limiter.locked("telegram:1", 3.0) and not limiter.locked("telegram:1", 604.0)
