"""Issue 10 item 14: two people who need the same new image at the same moment share one
upload, on Telegram and on Slack (the outlets' SingleFlight): the upload is held long enough
that the second send starts while the first is still uploading."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from chatlabel.emulators.slack import SlackFaults
from chatlabel.emulators.telegram import Faults
from tests.slack_harness import make_bot, open_items
from tests.slack_harness import project as slack_project
from tests.telegram_harness import is_item, project, running_bot

pytestmark = pytest.mark.timeout(30)

HOLD = 0.6  # seconds the platform takes to answer an upload


def _image(tmp_path: Path) -> Path:
    src = tmp_path / "cat.png"
    Image.new("RGB", (900, 700), (200, 120, 40)).save(src)
    return src


async def test_telegram_two_first_sends_of_one_image_share_one_upload(tmp_path: Path) -> None:
    src = _image(tmp_path)
    async with running_bot(tmp_path, [project(overlap=2, max_overlap=2)]) as b:
        await b.add_items(
            "animals",
            [{"id": "img", "text": "Which?", "media_kind": "image", "media_path": str(src)}],
        )
        b.emu.faults = Faults(delay_rate=1.0, delay_seconds=HOLD, methods={"sendPhoto"})
        ann, bob = b.user(1), b.user(2)
        await asyncio.gather(ann.send("/start"), bob.send("/start"))
        shown = await asyncio.gather(
            ann.wait_for_message(is_item, timeout=10), bob.wait_for_message(is_item, timeout=10)
        )
        calls = b.emu.calls_to("sendPhoto")
        assert len(calls) == 2
        # Both people were welcomed (and their items leased) while the upload was held: the
        # second needed the image before the first send had a file_id to share.
        welcomes = [c.time for c in b.emu.calls_to("sendMessage")]
        assert len(welcomes) == 2 and max(welcomes) < calls[0].time + HOLD
        assert len(b.emu.uploads) == 1  # one upload; the other went by its file_id
        assert {m.media.file_id for m in shown if m.media} == {b.emu.uploads[0].file_id}


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


async def test_slack_two_first_sends_of_one_image_share_one_upload(
    stack: contextlib.AsyncExitStack, tmp_path: Path
) -> None:
    src = _image(tmp_path)
    faults = SlackFaults(slow={"files.getUploadURLExternal": HOLD})
    bot = await make_bot(
        stack,
        tmp_path,
        slack_project(overlap=2, max_overlap=2),
        items={"triage": [{"id": "img", "text": "Which?", "image": str(src)}]},
        faults=faults,
    )
    ann, bob = bot.emu.user("U1"), bot.emu.user("U2")
    await asyncio.gather(ann.slash("/label"), bob.slash("/label"))
    await asyncio.gather(
        ann.wait_for(lambda: open_items(ann), timeout=10),
        bob.wait_for(lambda: open_items(bob), timeout=10),
    )
    assert len(bot.emu.calls_to("files.getUploadURLExternal")) == 1
    assert len(bot.emu.files) == 1
    [file_id] = bot.emu.files
    for user in (ann, bob):
        [item] = open_items(user)
        images = [b for b in item.blocks if b.get("type") == "image"]
        assert images and images[0]["slack_file"]["id"] == file_id
