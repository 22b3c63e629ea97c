"""The Telegram bot end to end: real python-telegram-bot over HTTP against the Bot API emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image
from telegram import BotCommandScopeChat

from chatlabel.conversation import Button, Catalog, Mechanics, Message
from chatlabel.conversation.render import item_view, pack
from chatlabel.media import prepare_image
from chatlabel.service.types import ProjectInfo, Task
from chatlabel.transports.telegram_outlet import body, keyboard
from tests.telegram_harness import (
    COORDINATOR_ID,
    Bench,
    is_item,
    new_message,
    next_item,
    project,
    running_bot,
)

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("telegram_storage")]
# End to end on both backends: the bot cannot tell which one keeps its data.
BACKENDS = ("sqlite", "postgresql")

ANIMALS = [{"id": "t1", "text": "Meow, says it."}, {"id": "t2", "text": "Woof, says it."}]


def _data(message: object) -> list[str]:
    return [str(b.get("callback_data")) for b in message.buttons]  # type: ignore[attr-defined]


async def _quiet(b: Bench, seconds: float = 0.5) -> None:
    """Let the bot and its push loop (0.2 s timer in tests) run for a while."""
    await asyncio.sleep(seconds)


# -- layout (no network) ----------------------------------------------------------------------


def test_buttons_per_row_fit_a_phone() -> None:
    def per_row(labels: list[str]) -> int:
        return len(pack([Button(label, "x") for label in labels])[0])

    assert per_row(["a", "b", "c", "d", "e"]) == 5
    assert per_row(["cat", "dog", "bird", "fish"]) == 4
    assert per_row(["positive", "negative", "neutral"]) == 3
    assert per_row(["positive", "negative", "neutral", "unclear"]) == 2  # 2 + 2, not 3 + 1
    assert per_row(["a rather long label", "another long label"]) == 1
    info = ProjectInfo("p", "P", "", "rating", tuple(str(n) for n in range(1, 11)))
    task = Task(7, info, "x", "t", None, None, None, None, info.labels, (), 0.0, 0)
    view = item_view(Catalog().texts("en"), task, Mechanics(lambda n: f"/{n}"))
    rows = keyboard(view).inline_keyboard  # type: ignore[union-attr]
    assert [len(r) for r in rows] == [5, 5, 2]  # a 10-point scale in two rows, then Skip, Report
    assert all(len(b.callback_data or "") <= 64 for r in rows for b in r)  # type: ignore[arg-type]
    shown = body(Message("x " * 800, status="✅ " + "long answer " * 200), 1024)
    assert len(shown) <= 1024 and shown.startswith("x x") and "\n\n✅ long answer" in shown


# -- join and answer ----------------------------------------------------------------------------


async def test_start_shows_instructions_then_the_first_item_and_sets_menus(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ANIMALS)
        ann = b.user(1, "Ann")
        item = await b.start(ann)
        welcome = ann.messages[-2]
        assert "Welcome to Animals!" in welcome.content and "Label the animals." in welcome.content
        assert item.content == "Meow, says it."
        assert [btn["text"] for btn in item.buttons] == ["cat", "dog", "bird", "Skip", "Report"]
        assert [len(row) for row in item.reply_markup["inline_keyboard"]] == [3, 2]  # type: ignore[index]
        asg = _data(item)[0].split(":")[1]
        assert _data(item) == [f"a:{asg}:0", f"a:{asg}:1", f"a:{asg}:2", f"s:{asg}", f"r:{asg}"]

        bot = b.transport.application.bot
        assert [c.command for c in await bot.get_my_commands()] == [
            "start", "me", "top", "leaderboard", "pause", "resume", "mute", "unmute", "language",
            "help",
        ]  # fmt: skip
        boss = b.user(COORDINATOR_ID, "Boss")
        await b.start(boss)  # the coordinator's chat exists now: their menu is set
        scoped = await bot.get_my_commands(scope=BotCommandScopeChat(COORDINATOR_ID))
        assert {"progress", "export", "pause_project"} <= {c.command for c in scoped}


async def test_a_press_edits_the_item_and_the_next_item_follows(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ANIMALS)
        ann = b.user(1)
        item = await b.start(ann)
        query = await ann.press(item, "cat")
        assert await ann.wait_for_answer(query) is None  # answered at once, no toast
        second = await next_item(ann, item.message_id)
        assert second.content == "Woof, says it."
        shown = ann.chat.messages[item.message_id]
        assert shown.content == "Meow, says it.\n\n✅ cat"
        assert [btn["text"] for btn in shown.buttons] == ["↩️ Undo"]
        assert await b.answers() == [("t1", "cat")]
        await ann.press(second, "dog")
        idle = await new_message(ann, second.message_id, lambda m: not is_item(m))
        assert "That's everything for now" in idle.content
        assert await b.answers() == [("t1", "cat"), ("t2", "dog")]


async def test_multi_choice_toggles_in_place_then_done(tmp_path: Path) -> None:
    colours = project("colours", kind="multi", labels=["red", "green", "blue"])
    async with running_bot(tmp_path, [colours]) as b:
        await b.add_items("colours", [{"id": "c1", "text": "A Christmas tree with lights"}])
        ann = b.user(1)
        item = await b.start(ann)
        assert "Pick all that apply" in item.content
        assert [btn["text"] for btn in item.buttons] == [
            "red",
            "green",
            "blue",
            "Done",
            "Skip",
            "Report",
        ]
        for press, shown in (("red", "✓ red"), ("green", "✓ green"), ("✓ red", "red")):
            await ann.press(item, press)
            await ann.wait_for(lambda s=shown: s in [x["text"] for x in item.buttons])  # type: ignore[misc]
        assert [btn["text"] for btn in item.buttons][:3] == ["red", "✓ green", "blue"]
        assert len(ann.messages) == 2  # welcome and item: toggles edit in place
        await ann.press(item, "Done")
        await ann.wait_for(lambda: item.content.endswith("✅ green"))
        assert await b.answers() == [("c1", '["green"]')]


async def test_rating_is_one_row_of_values(tmp_path: Path) -> None:
    stars = project("stars", kind="rating", labels=["1", "2", "3", "4", "5"])
    async with running_bot(tmp_path, [stars]) as b:
        await b.add_items("stars", [{"id": "s1", "text": "How good is this pizza?"}])
        ann = b.user(1)
        item = await b.start(ann)
        assert [len(r) for r in item.reply_markup["inline_keyboard"]] == [5, 2]  # type: ignore[index]
        await ann.press(item, "4")
        await ann.wait_for(lambda: item.content.endswith("✅ 4"))
        assert await b.answers() == [("s1", "4")]


async def test_verify_shows_the_suggestion_drawn_on_the_image(tmp_path: Path) -> None:
    src = tmp_path / "street.png"
    Image.new("RGB", (900, 600), (120, 160, 200)).save(src)
    boxes = [{"x": 0.1, "y": 0.2, "w": 0.4, "h": 0.5, "label": "cat"}]
    check = project("check", kind="verify", labels=[], max_image_side=640)
    async with running_bot(tmp_path, [check]) as b:
        await b.add_items("check", [{
            "id": "v1", "text": "Is the box around the cat?", "media_kind": "image",
            "media_path": str(src), "suggestion": "cat", "boxes": boxes,
        }])  # fmt: skip
        ann = b.user(1)
        item = await b.start(ann)
        assert item.kind == "photo"
        assert "Suggested: cat — is this right?" in item.content
        assert [btn["text"] for btn in item.buttons] == ["✅ Yes", "❌ No", "Skip", "Report"]
        [upload] = b.emu.uploads
        sent = b.emu.files[upload.file_id].data
        cache = tmp_path / "cache"
        assert sent == prepare_image(src, cache, max_side=640, boxes=boxes).read_bytes()
        assert sent != prepare_image(src, cache, max_side=640).read_bytes()  # boxes were drawn
        await ann.press(item, "✅ Yes")
        await ann.wait_for(lambda: item.content.endswith("✅ yes"))
        assert await b.answers() == [("v1", "yes")]


async def test_a_text_item_is_answered_by_the_next_message(tmp_path: Path) -> None:
    notes = project("notes", kind="text", labels=[])
    async with running_bot(tmp_path, [notes]) as b:
        await b.add_items("notes", [{"id": "n1", "text": "Describe the animal in the photo."}])
        ann = b.user(1)
        item = await b.start(ann)
        assert "Reply with your answer" in item.content
        assert [btn["text"] for btn in item.buttons] == ["Skip", "Report"]
        await ann.send("a small brown dog")
        await ann.wait_for(lambda: item.content.endswith("✅ a small brown dog"))
        assert [btn["text"] for btn in item.buttons] == ["↩️ Undo"]
        assert await b.answers() == [("n1", "a small brown dog")]
        last = await new_message(ann, item.message_id)
        assert "That's everything for now" in last.content
        await ann.send("one more thing")  # no item is waiting for text now
        reply = await new_message(ann, last.message_id)
        assert "no item waiting for a written answer" in reply.content
        assert len(await b.answers()) == 1


async def test_undo_takes_the_answer_back_and_shows_the_item_again(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ANIMALS)
        ann = b.user(1)
        first = await b.start(ann)
        await ann.press(first, "cat")
        second = await next_item(ann, first.message_id)
        await ann.press(first, "↩️ Undo")
        # The item is back where it was, buttons and all; the newer item, still open, is
        # taken away (it comes back next), so the undone one is the last in the chat again.
        await ann.wait_for(lambda: first.content == "Meow, says it." and is_item(first))
        again = first
        await ann.wait_for(lambda: second.deleted)
        assert await b.answers() == []
        await ann.press(again, "dog")
        back = await next_item(ann, second.message_id)
        assert back.content == "Woof, says it."
        assert await b.answers() == [("t1", "dog")]
        b.clock.advance(61)  # past undo_seconds
        query = await ann.press(again, "↩️ Undo")
        assert await ann.wait_for_answer(query) == "Too late to undo, sorry."
        assert await b.answers() == [("t1", "dog")]


async def test_skip_moves_on_and_the_item_never_comes_back(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ANIMALS)
        ann = b.user(1)
        first = await b.start(ann)
        await ann.press(first, "Skip")
        second = await next_item(ann, first.message_id)
        assert first.content.endswith("⏭ Skipped")
        assert second.content == "Woof, says it."
        await ann.press(second, "bird")
        idle = await new_message(ann, second.message_id, lambda m: not is_item(m))
        assert "everything for now" in idle.content
        assert await b.answers() == [("t1", None), ("t2", "bird")]


# -- quality ------------------------------------------------------------------------------------


async def test_gold_feedback_follows_a_missed_gold_item(tmp_path: Path) -> None:
    gold = project(quality={"qualification": 1, "min_gold_accuracy": 0.0, "gold_feedback": True})
    async with running_bot(tmp_path, [gold]) as b:
        await b.add_items("animals", [
            {"id": "g1", "text": "It barks at the postman.", "gold": "dog",
             "gold_reason": "Barking means dog."},
            *ANIMALS,
        ])  # fmt: skip
        ann = b.user(1)
        item = await b.start(ann)
        assert item.content == "It barks at the postman."  # qualification comes first
        await ann.press(item, "cat")
        nxt = await next_item(ann, item.message_id)
        assert nxt.content == "Meow, says it."
        # The missed item itself says what it should have been (one message, where it was).
        note = ann.chat.messages[item.message_id]
        assert note.content == (
            "It barks at the postman.\n\n✅ cat\n\nℹ️ The expected answer was: dog\n"
            "Barking means dog."
        )


async def test_a_bad_annotator_is_suspended_told_why_and_gets_nothing_more(
    tmp_path: Path,
) -> None:
    # The absolute gate: its fixed bar is the one people are told about.
    strict = project(quality={"qualification": 2, "min_gold_accuracy": 0.7, "gate": "absolute"})
    async with running_bot(tmp_path, [strict]) as b:
        await b.add_items("animals", [
            {"id": "g1", "text": "It barks.", "gold": "dog"},
            {"id": "g2", "text": "It purrs.", "gold": "cat"},
            *ANIMALS,
        ])  # fmt: skip
        ann = b.user(1)
        item = await b.start(ann)
        await ann.press(item, "bird")
        item = await next_item(ann, item.message_id)
        await ann.press(item, "bird")
        notice = await new_message(ann, item.message_id, lambda m: "⛔" in m.content)
        assert "check items were below the 70%" in notice.content
        await _quiet(b)
        assert not any(is_item(m) and m.message_id > item.message_id for m in ann.messages)
        assert await b.query("SELECT status FROM members") == [("suspended",)]
        await ann.send("/start")
        again = await new_message(ann, notice.message_id, lambda m: "not receiving" in m.content)
        assert "A coordinator can reinstate you." in again.content
        await b.add_items("animals", [{"id": "t3", "text": "Tweet."}])
        await _quiet(b)
        assert not any(is_item(m) and m.message_id > item.message_id for m in ann.messages)


# -- leases and pushes ----------------------------------------------------------------------------


async def test_an_expired_lease_is_pushed_to_someone_waiting(tmp_path: Path) -> None:
    single = project(overlap=1, max_overlap=1)
    async with running_bot(tmp_path, [single]) as b:
        await b.add_items("animals", ANIMALS[:1])
        ann, bob = b.user(1), b.user(2)
        held = await b.start(ann)
        told = await b.start(bob)
        assert "everything for now" in told.content
        b.clock.advance(601)  # Ann's lease runs out; Bob does nothing
        pushed = await next_item(bob, told.message_id)
        assert pushed.content == "Meow, says it."
        query = await ann.press(held, "cat")
        assert await ann.wait_for_answer(query) == "This item has timed out; here's a fresh one."
        await ann.wait_for(lambda: held.content.endswith("⌛ Timed out") and not held.buttons)
        await new_message(ann, held.message_id, lambda m: "everything for now" in m.content)
        assert await b.answers() == []
        await bob.press(pushed, "dog")
        await bob.wait_for(lambda: pushed.content.endswith("✅ dog"))
        assert await b.answers() == [("t1", "dog")]


async def test_an_item_that_needs_another_answer_is_pushed(tmp_path: Path) -> None:
    async with running_bot(tmp_path, [project(overlap=2, max_overlap=3)]) as b:
        await b.add_items("animals", ANIMALS[:1])
        ann, bob, cy = b.user(1), b.user(2), b.user(3)
        a_item, b_item = await b.start(ann), await b.start(bob)
        told = await b.start(cy)
        assert "everything for now" in told.content
        await ann.press(a_item, "cat")
        await bob.press(b_item, "dog")  # a tie: the item wants a third answer
        pushed = await next_item(cy, told.message_id)
        assert pushed.content == "Meow, says it."


async def test_new_items_are_pushed_unless_paused(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        ann, bob = b.user(1), b.user(2)
        told_a, told_b = await b.start(ann), await b.start(bob)
        assert "everything for now" in told_a.content
        await bob.send("/pause")
        paused = await new_message(bob, told_b.message_id)
        assert paused.content.startswith("Paused.")
        await b.add_items("animals", ANIMALS)
        pushed = await next_item(ann, told_a.message_id)
        assert pushed.content == "Meow, says it."
        await _quiet(b)
        assert not any(is_item(m) for m in bob.messages)
        await bob.send("/resume")
        resumed = await next_item(bob, paused.message_id)
        assert bob.messages[-2].content == "Welcome back!"
        assert resumed.content in ("Meow, says it.", "Woof, says it.")


# -- projects, commands, limits -----------------------------------------------------------------


async def test_several_projects_offer_a_choice(tmp_path: Path) -> None:
    projects = [project(), project("colours", title="Colours", kind="multi", labels=["r", "g"])]
    async with running_bot(tmp_path, projects) as b:
        await b.add_items("colours", [{"id": "c1", "text": "Grass"}])
        ann = b.user(1)
        await ann.send("/start")
        menu = await ann.wait_for_message(lambda m: bool(m.buttons))
        assert menu.content == "Which project would you like to label?"
        assert _data(menu) == ["p:0", "p:1"]
        await ann.press(menu, "Colours")
        item = await next_item(ann, menu.message_id)
        assert item.content.startswith("Grass")
        assert menu.content.endswith("➡️ Colours") and menu.buttons == []
        bob = b.user(2)
        direct = await b.start(bob, "colours")  # a deep link names the project
        assert direct.content.startswith("Grass")


async def test_help_stats_and_unknown_commands(tmp_path: Path) -> None:
    # With a leaderboard, /stats (another name for /me) shows the person's place on it.
    async with running_bot(tmp_path, [project(leaderboard=True)]) as b:
        await b.add_items("animals", ANIMALS)
        ann, boss = b.user(1), b.user(COORDINATOR_ID)
        item = await b.start(ann)
        await ann.press(item, "cat")
        nxt = await next_item(ann, item.message_id)
        await ann.send("/stats")
        stats = await new_message(ann, nxt.message_id)
        assert "Answers: 1 (skipped 0)" in stats.content and "Rank: 1 of 1" in stats.content
        await ann.send("/help")
        helped = await new_message(ann, stats.message_id)
        assert "/me" in helped.content and "Coordinator commands" not in helped.content
        await ann.send("/frobnicate")
        unknown = await new_message(ann, helped.message_id)
        assert "don't know that command" in unknown.content
        await boss.send("/help")
        boss_help = await boss.wait_for_message(1)
        assert "Coordinator commands" in boss_help.content


async def test_long_texts_are_cut_to_telegram_limits(tmp_path: Path) -> None:
    src = tmp_path / "pic.jpg"
    Image.new("RGB", (300, 200), (10, 200, 10)).save(src)
    long_text = " ".join(["lorem"] * 1200)  # 7,199 characters
    async with running_bot(tmp_path, [project(overlap=1, max_overlap=1)]) as b:
        await b.add_items("animals", [
            {"id": "long", "text": long_text},
            {"id": "pic", "text": long_text[:1500], "media_kind": "image", "media_path": str(src)},
        ])  # fmt: skip
        ann = b.user(1)
        item = await b.start(ann)
        assert len(item.content) <= 4096 and item.content.endswith("…")
        await ann.press(item, "cat")
        await ann.wait_for(lambda: item.content.endswith("✅ cat"))
        assert len(item.content) <= 4096
        photo = await next_item(ann, item.message_id)
        assert photo.kind == "photo" and len(photo.content) <= 1024
        assert photo.content.endswith("…")
        await ann.press(photo, "dog")
        await ann.wait_for(lambda: photo.content.endswith("✅ dog"))
        assert len(photo.content) <= 1024


async def test_audio_voice_and_video_items_are_sent_as_media_once(tmp_path: Path) -> None:
    files = {"song.mp3": b"ID3" + b"\0" * 64, "note.ogg": b"OggS" + b"\0" * 64}
    files["clip.mp4"] = b"\0\0\0\x18ftypmp42" + b"\0" * 64
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    rows = [
        {"id": "a1", "text": "Which animal sings?", "media_kind": "audio",
         "media_path": str(tmp_path / "song.mp3")},
        {"id": "a2", "text": "Which animal speaks?", "media_kind": "audio",
         "media_path": str(tmp_path / "note.ogg")},
        {"id": "v1", "text": "Which animal runs?", "media_kind": "video",
         "media_path": str(tmp_path / "clip.mp4")},
        {"id": "x1", "text": "Which animal hides?", "media_kind": "image",
         "media_path": str(tmp_path / "gone.jpg")},
    ]  # fmt: skip
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", rows)
        for uid in (1, 2):
            user = b.user(uid)
            item = await b.start(user)
            kinds = []
            for n in range(3):
                kinds.append((item.kind, item.content.split("\n\n")[0]))
                await user.press(item, "bird")
                if n < 2:
                    item = await next_item(user, item.message_id)
            await user.wait_for(lambda i=item: i.content.endswith("✅ bird"))  # type: ignore[misc]
            # The item whose picture is missing is never offered without it (it would be
            # answered blind): it is skipped for them, and there is nothing left.
            await user.wait_for(lambda u=user: "everything for now" in u.messages[-1].content)
            assert kinds == [
                ("audio", "Which animal sings?"), ("voice", "Which animal speaks?"),
                ("video", "Which animal runs?"),
            ]  # fmt: skip
            assert not [m for m in user.messages if "Which animal hides?" in m.content]
        assert [u.method for u in b.emu.uploads] == ["sendAudio", "sendVoice", "sendVideo"]
        answers = [a for a in await b.answers() if a[1] is not None]
        assert sorted(answers) == sorted([(i, "bird") for i in ("a1", "a2", "v1")] * 2)
        # Recorded as skips that count nowhere: not as theirs, not in any vote.
        assert await b.query(
            "SELECT i.ext_id, x.value, x.counted FROM answers x JOIN items i ON i.id = x.item_id"
            " WHERE x.value IS NULL"
        ) == [("x1", None, 0), ("x1", None, 0)]
        assert await b.query("SELECT SUM(skips) FROM members") == [(0,)]
