"""The Telegram Bot API emulator, driven by the real python-telegram-bot client over HTTP."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from telegram import Bot, BotCommandScopeChat, Update
from telegram import InlineKeyboardButton as Button
from telegram import InlineKeyboardMarkup as Keyboard
from telegram.error import (
    BadRequest,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes
from telegram.request import HTTPXRequest

from chatlabel.emulators.telegram import (
    METHODS,
    ApiError,
    BotApiEmulator,
    EmulatorUsageError,
    Faults,
)
from chatlabel.emulators.telegram_methods import missing_field_error

pytestmark = [
    pytest.mark.timeout(20),
    # do_api_request is how these tests send what PTB's typed methods would never send.
    pytest.mark.filterwarnings("ignore:Please use 'Bot:telegram.warnings.PTBUserWarning"),
]


def _png(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def _keyboard(*choices: str) -> Keyboard:
    return Keyboard([[Button(c, callback_data=f"answer:{c}") for c in choices]])


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator() as emulator:
        yield emulator


@pytest.fixture
async def bot(emu: BotApiEmulator) -> AsyncIterator[Bot]:
    async with emu.make_bot() as client:
        yield client


async def _started(emu: BotApiEmulator, user_id: int, bot: Bot) -> None:
    """A user who sent /start, with that update already confirmed by the bot."""
    await emu.user(user_id).send("/start")
    updates = await bot.get_updates()
    await bot.get_updates(offset=updates[-1].update_id + 1)


# -- basics and wire format -------------------------------------------------------------------


async def test_get_me(emu: BotApiEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "chatlabel_emulator_bot")
    assert [call.method for call in emu.calls] == ["getMe", "getMe"]  # initialize() and ours


async def test_wrong_token_is_unauthorized(emu: BotApiEmulator) -> None:
    request = HTTPXRequest(httpx_kwargs={"trust_env": False})
    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with Bot("999:WRONG", base_url=emu.base_url, request=request):
            pass  # initialize() calls getMe, which is refused; __aenter__ then shuts down
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{emu.base_url}999:WRONG/getMe") as response,
    ):
        assert response.status == 401
        body = await response.json()
    assert body == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_unknown_method_is_404(emu: BotApiEmulator, bot: Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": 1})
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{emu.base_url}{emu.token}/sendTelepathy") as response,
    ):
        assert response.status == 404
        assert await response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert emu.calls_to("sendTelepathy")[-1].status == 404


async def test_json_get_and_form_bodies_are_all_understood(emu: BotApiEmulator) -> None:
    ann = emu.user(42, "Ann")
    await ann.send("/start")
    markup = {"inline_keyboard": [[{"text": "yes", "callback_data": "y"}]]}
    url = f"{emu.base_url}{emu.token}"
    async with aiohttp.ClientSession() as http:
        body = {"chat_id": 42, "text": "json", "reply_markup": markup}
        async with http.post(f"{url}/sendMessage", json=body) as r:
            assert (await r.json())["result"]["reply_markup"] == markup
        form = {"chat_id": "42", "text": "form", "reply_markup": json.dumps(markup)}
        async with http.post(f"{url}/sendMessage", data=form) as r:
            assert (await r.json())["result"]["text"] == "form"
        async with http.get(f"{url}/sendMessage", params={"chat_id": "42", "text": "get"}) as r:
            assert (await r.json())["ok"] is True
        async with http.get(f"{url}/GETME") as r:  # method names are case-insensitive
            assert (await r.json())["result"]["id"] == 123456
    assert [m.text for m in ann.messages] == ["json", "form", "get"]
    assert ann.messages[0].buttons == [{"text": "yes", "callback_data": "y"}]


# -- the spec ---------------------------------------------------------------------------------


def _spec_methods() -> dict[str, Any]:
    # The Bot API reference (MIT, from telegram-bot-api-spec) ships with the tests.
    path = Path(__file__).resolve().parent / "specs" / "telegram-bot-api.json"
    methods: dict[str, Any] = json.loads(path.read_text())["methods"]
    return methods


def test_implemented_methods_and_required_fields_match_the_spec() -> None:
    spec = _spec_methods()
    assert len(METHODS) >= 20
    for key, method in METHODS.items():
        assert key == method.name.lower()
        assert method.name in spec, f"{method.name} is not a Bot API method"
        required = {f["name"] for f in spec[method.name].get("fields", []) if f["required"]}
        assert set(method.required) == required, method.name


async def test_required_fields_are_enforced_as_the_spec_says(emu: BotApiEmulator, bot: Bot) -> None:
    spec = _spec_methods()
    for method in METHODS.values():
        fields = spec[method.name].get("fields", [])
        for missing in method.required:
            others = {name: "1" for name in method.required if name != missing}
            with pytest.raises(BadRequest) as refused:
                await bot.do_api_request(method.name, api_kwargs=others)
            assert missing.split("_")[0] in str(refused.value).lower(), (method.name, missing)
        # With every spec-required field present, no other field may be demanded, except the
        # ones the spec itself makes conditional ("Required if inline_message_id is not ...").
        unconditional = {
            f["name"]
            for f in fields
            if not f["required"] and not f["description"].startswith("Required if")
        }
        demanded = {missing_field_error(n).description.lower(): n for n in unconditional}
        try:
            await bot.do_api_request(method.name, api_kwargs={n: "1" for n in method.required})
        except BadRequest as error:
            described = f"bad request: {error.message.lower()}"  # PTB strips and capitalizes
            assert described not in demanded, (method.name, demanded.get(described))


# -- messages, keyboards, callback queries ------------------------------------------------------


async def test_press_gives_callback_query_answerable_once(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 7, bot)
    ann = emu.user(7)
    sent = await bot.send_message(7, "Is this a cat?", reply_markup=_keyboard("yes", "no"))
    query_id = await ann.press(ann.last_message, "no")
    [update] = await bot.get_updates()
    assert update.callback_query is not None and update.callback_query.message is not None
    assert update.callback_query.id == query_id
    assert update.callback_query.data == "answer:no"
    assert update.callback_query.message.message_id == sent.message_id
    assert update.callback_query.from_user.id == 7
    assert await bot.answer_callback_query(query_id, text="Saved") is True
    with pytest.raises(BadRequest, match="(?i)query is too old"):
        await bot.answer_callback_query(query_id, text="again")
    with pytest.raises(BadRequest, match="(?i)query is too old"):
        await bot.answer_callback_query("12345", text="unknown")
    assert ann.callback_answers == ["Saved"]


async def test_press_only_what_is_on_the_current_keyboard(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 8, bot)
    ann = emu.user(8)
    sent = await bot.send_message(8, "Pick", reply_markup=_keyboard("a", "b"))
    with pytest.raises(EmulatorUsageError, match="no button 'c'"):
        await ann.press(sent.message_id, "c")
    await bot.edit_message_text("Picked", chat_id=8, message_id=sent.message_id)
    assert ann.last_message.buttons == []  # editing text without reply_markup drops it
    with pytest.raises(EmulatorUsageError, match="keyboard now is empty"):
        await ann.press(sent.message_id, "a")
    forged = await ann.press_raw(sent.message_id, "answer:zzz")
    [update] = await bot.get_updates(offset=-1)
    assert update.callback_query is not None
    assert (update.callback_query.id, update.callback_query.data) == (forged, "answer:zzz")


async def test_edit_that_changes_nothing_is_bad_request(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 9, bot)
    sent = await bot.send_message(9, "Item 1", reply_markup=_keyboard("x"))
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await sent.edit_text("Item 1", reply_markup=_keyboard("x"))
    await sent.edit_reply_markup(reply_markup=_keyboard("x", "y"))
    with pytest.raises(BadRequest, match="(?i)message to edit not found"):
        await bot.edit_message_text("?", chat_id=9, message_id=999)
    assert emu.user(9).last_message.edit_count == 1
    assert [b["text"] for b in emu.user(9).last_message.buttons] == ["x", "y"]


async def test_callback_data_is_limited_to_64_bytes(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 10, bot)
    fits = "é" * 32  # 64 bytes in UTF-8
    await bot.send_message(10, "ok", reply_markup=Keyboard([[Button("b", callback_data=fits)]]))
    too_long = "é" * 33  # 33 characters, 66 bytes
    with pytest.raises(BadRequest, match="(?i)button_data_invalid"):
        await bot.send_message(
            10, "no", reply_markup=Keyboard([[Button("b", callback_data=too_long)]])
        )
    text_only = {"inline_keyboard": [[{"text": "b"}]]}
    with pytest.raises(BadRequest, match="(?i)text buttons are unallowed"):
        await bot.do_api_request(
            "sendMessage", api_kwargs={"chat_id": 10, "text": "t", "reply_markup": text_only}
        )
    assert [m.text for m in emu.user(10).messages] == ["ok"]


async def test_text_limits_and_parse_modes(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 11, bot)
    assert (await bot.send_message(11, "x" * 4096)).text == "x" * 4096
    with pytest.raises(BadRequest, match="(?i)message is too long"):
        await bot.send_message(11, "x" * 4097)
    with pytest.raises(BadRequest, match="(?i)message text is empty"):
        await bot.send_message(11, "  ")
    html = await bot.send_message(11, "<b>Item</b> &amp; more", parse_mode="HTML")
    assert html.text == "Item & more"
    with pytest.raises(BadRequest, match='(?i)unsupported start tag "br"'):
        await bot.send_message(11, "a<br>b", parse_mode="HTML")
    with pytest.raises(BadRequest, match="(?i)character '.' is reserved"):
        await bot.send_message(11, "Item 1.", parse_mode="MarkdownV2")
    assert (await bot.send_message(11, r"*Item* 1\.", parse_mode="MarkdownV2")).text == "Item 1."


async def test_message_lifecycle_with_caption_and_delete(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 12, bot)
    photo = await bot.send_photo(12, _png(), caption="c" * 10, reply_markup=_keyboard("ok"))
    with pytest.raises(BadRequest, match="(?i)caption is too long"):
        await bot.send_photo(12, photo.photo[-1].file_id, caption="c" * 1025)
    with pytest.raises(BadRequest, match="(?i)no text in the message"):
        await bot.edit_message_text("t", chat_id=12, message_id=photo.message_id)
    edited = await bot.edit_message_caption(12, photo.message_id, caption="new")
    assert not isinstance(edited, bool) and edited.caption == "new"
    assert emu.user(12).last_message.caption == "new"
    assert await bot.send_chat_action(12, "upload_photo") is True
    assert await bot.delete_message(12, photo.message_id) is True
    with pytest.raises(BadRequest, match="(?i)message to delete not found"):
        await bot.delete_message(12, photo.message_id)
    assert emu.user(12).messages == []


# -- files -------------------------------------------------------------------------------------


async def test_photo_uploaded_once_then_sent_by_file_id(emu: BotApiEmulator, bot: Bot) -> None:
    image = _png(1200, 900)
    users = [emu.user(100 + n) for n in range(20)]
    for user in users:
        await user.send("/start")
    first = await bot.send_photo(users[0].id, image, caption="Item 1")
    assert [(s.width, s.height) for s in first.photo][-1] == (1200, 900)
    assert [s.width for s in first.photo] == sorted(s.width for s in first.photo)
    file_id = first.photo[-1].file_id
    for user in users[1:]:
        again = await bot.send_photo(user.id, file_id, caption="Item 1")
        assert again.photo[-1].file_id == file_id
    assert len(emu.uploads) == 1 and emu.uploads[0].size == len(image)
    assert len(emu.calls_to("sendPhoto")) == 20
    downloaded = await (await bot.get_file(file_id)).download_as_bytearray()
    assert bytes(downloaded) == image
    small = await (await bot.get_file(first.photo[0].file_id)).download_as_bytearray()
    with Image.open(io.BytesIO(bytes(small))) as thumbnail:
        assert thumbnail.size == (first.photo[0].width, first.photo[0].height)


async def test_bad_media_is_refused_without_upload(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 13, bot)
    with pytest.raises(BadRequest, match="(?i)image_process_failed"):
        await bot.send_photo(13, b"definitely not an image")
    with pytest.raises(BadRequest, match="(?i)wrong file identifier"):
        await bot.send_photo(13, "no-such-file-id")
    with pytest.raises(BadRequest, match="(?i)failed to get http url content"):
        await bot.send_photo(13, "https://example.com/cat.jpg")
    document = await bot.send_document(13, b"a,b\n1,2\n", filename="items.csv")
    assert document.document is not None and document.document.file_name == "items.csv"
    with pytest.raises(BadRequest, match="(?i)type of file mismatch"):
        await bot.send_photo(13, document.document.file_id)
    voice = await bot.send_voice(13, b"OggS-fake", duration=3)
    assert voice.voice is not None and voice.voice.duration in (3, timedelta(seconds=3))
    assert [u.method for u in emu.uploads] == ["sendDocument", "sendVoice"]
    with pytest.raises(BadRequest, match="(?i)invalid file_id"):
        await bot.get_file("nope")


async def test_what_telegram_refuses_is_refused(emu: BotApiEmulator, bot: Bot) -> None:
    """Photos too long or too narrow, uploads over 50 MB (413), more than 100 buttons."""
    await _started(emu, 14, bot)
    for size in ((9000, 1100), (2100, 100)):  # sides add up past 10,000; a ratio over 20
        buf = io.BytesIO()
        Image.new("RGB", size).save(buf, "PNG")
        with pytest.raises(BadRequest, match="(?i)photo_invalid_dimensions"):
            await bot.send_photo(14, buf.getvalue())
    with pytest.raises(NetworkError, match="Request Entity Too Large"):
        await bot.send_audio(14, b"ID3" + b"\0" * (51 * 1024 * 1024), filename="a.mp3")
    rows = [[Button(f"b{r}-{c}", callback_data=f"{r}:{c}") for c in range(8)] for r in range(13)]
    with pytest.raises(BadRequest, match="(?i)reply markup is too long"):
        await bot.send_message(14, "Choose", reply_markup=Keyboard(rows))  # 104 buttons
    assert emu.uploads == []


# -- users: blocking, waiting ------------------------------------------------------------------


async def test_blocked_user_is_forbidden(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 14, bot)
    ann = emu.user(14)
    ann.block()
    with pytest.raises(Forbidden, match="(?i)bot was blocked by the user"):
        await bot.send_message(14, "still there?")
    [update] = await bot.get_updates()
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"
    ann.unblock()
    assert (await bot.send_message(14, "welcome back")).text == "welcome back"
    emu.user(15)  # exists, but never wrote to the bot
    with pytest.raises(Forbidden, match="(?i)can't initiate conversation"):
        await bot.send_message(15, "hi")
    with pytest.raises(BadRequest, match="(?i)chat not found"):
        await bot.send_message(16, "hi")


async def test_wait_for_message_waits_and_times_out_clearly(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 17, bot)
    ann = emu.user(17)
    later = asyncio.create_task(ann.wait_for_message(lambda m: m.text == "second"))
    await bot.send_message(17, "first")
    assert not later.done()
    await bot.send_message(17, "second")
    assert (await later).text == "second"
    assert (await ann.wait_for_message(2)).text == "second"
    with pytest.raises(TimeoutError, match="message #3 within 0.05s.*'second'"):
        await ann.wait_for_message(3, timeout=0.05)


# -- updates -----------------------------------------------------------------------------------


async def test_long_poll_returns_as_soon_as_an_update_arrives(
    emu: BotApiEmulator, bot: Bot
) -> None:
    ann = emu.user(20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    assert await emu.signal.wait_until(lambda: bool(emu.calls_to("getUpdates")), 2)
    assert not poll.done()
    await ann.send("/start ABC")
    updates = await asyncio.wait_for(poll, 2)
    assert loop.time() - started < 2
    [update] = updates
    assert update.message is not None and update.message.text == "/start ABC"
    assert update.message.entities[0].type == "bot_command"
    started = loop.time()
    assert await bot.get_updates(offset=update.update_id + 1, timeout=1) == ()
    assert 0.9 <= loop.time() - started < 3


async def test_offset_confirms_and_redeliver_repeats_once(emu: BotApiEmulator, bot: Bot) -> None:
    ann = emu.user(21)
    await ann.send("one")
    await ann.send("two")
    first, second = await bot.get_updates()
    assert second.update_id == first.update_id + 1
    assert len(await bot.get_updates()) == 2  # unconfirmed updates come again
    assert await bot.get_updates(offset=second.update_id + 1) == ()
    assert emu.pending_updates == []
    emu.redeliver(first.update_id)
    [again] = await bot.get_updates(offset=second.update_id + 1)
    assert (again.update_id, again.message and again.message.text) == (first.update_id, "one")
    assert await bot.get_updates(offset=second.update_id + 1) == ()
    assert first.message is not None
    raw = emu.inject_update({"message": {**first.message.to_dict(), "text": "raw"}})
    [injected] = await bot.get_updates()
    assert injected.update_id == raw > second.update_id
    assert injected.message is not None and injected.message.text == "raw"


async def test_allowed_updates_filters_update_kinds(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 22, bot)
    ann = emu.user(22)
    sent = await bot.send_message(22, "q", reply_markup=_keyboard("a"))
    await ann.send("ignored text")
    await ann.press(sent.message_id, "a")
    updates = await bot.get_updates(allowed_updates=[Update.CALLBACK_QUERY])
    assert [u.callback_query is not None for u in updates] == [True]


# -- faults ------------------------------------------------------------------------------------


async def test_faults_give_retry_after_and_network_errors(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 30, bot)
    emu.faults = Faults(rate_429=1.0, retry_after=3, seed=1)
    with pytest.raises(RetryAfter) as limited:
        await bot.send_message(30, "x")
    assert limited.value.retry_after in (3, timedelta(seconds=3))
    assert await bot.get_updates() == ()  # getUpdates is spared unless listed
    assert emu.faults.injected["429"] == 1 and emu.user(30).messages == []
    emu.faults = None
    emu.fail_next("sendMessage", ApiError(502, "Bad Gateway"))
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(30, "x")
    assert (await bot.send_message(30, "x")).text == "x"
    async with aiohttp.ClientSession() as http:
        emu.fail_next("getMe", ApiError.too_many_requests(4))
        async with http.post(f"{emu.base_url}{emu.token}/getMe") as response:
            assert response.status == 429
            assert await response.json() == {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 4",
                "parameters": {"retry_after": 4},
            }


def test_faults_are_seeded_and_scoped() -> None:
    def run(seed: int) -> list[tuple[int | None, float]]:
        faults = Faults(rate_429=0.2, rate_5xx=0.1, delay_rate=0.1, delay_seconds=0.5, seed=seed)
        draws = [faults.draw() for _ in range(300)]
        assert 20 < faults.injected["429"] < 100 and 5 < faults.injected["5xx"] < 60
        return [(error.status if error else None, delay) for error, delay in draws]

    assert run(1) == run(1) != run(2)
    assert not Faults().applies_to("getUpdates") and Faults().applies_to("sendPhoto")
    only = Faults(methods=["getUpdates"])
    assert only.applies_to("getupdates") and not only.applies_to("sendMessage")
    with pytest.raises(ValueError, match="rates"):
        Faults(rate_429=0.8, rate_5xx=0.3)


# -- commands, and a whole PTB Application --------------------------------------------------------


async def test_commands_are_stored_per_scope(emu: BotApiEmulator, bot: Bot) -> None:
    await _started(emu, 40, bot)
    await bot.set_my_commands([("start", "Start labeling"), ("help", "Help")])
    await bot.set_my_commands([("progress", "Progress")], scope=BotCommandScopeChat(40))
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    scoped = await bot.get_my_commands(scope=BotCommandScopeChat(40))
    assert [c.command for c in scoped] == ["progress"]
    with pytest.raises(BadRequest, match="(?i)bot_command_invalid"):
        await bot.set_my_commands([("Start", "capitals are refused")])
    with pytest.raises(BadRequest, match="(?i)botcommandscope"):
        await bot.do_api_request(
            "setMyCommands",
            api_kwargs={"commands": [{"command": "a", "description": "b"}], "scope": {"type": "x"}},
        )
    assert await bot.delete_my_commands() is True
    assert await bot.get_my_commands() == ()


async def test_ptb_application_polls_and_answers(emu: BotApiEmulator) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text(f"code {context.args}", reply_markup=_keyboard("cat"))

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Thanks!")
        await query.edit_message_text(f"You chose {query.data}")

    app = emu.application_builder().build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    ann = emu.user(50, "Ann", "ann")
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1)
        try:
            await ann.send("/start INVITE")
            item = await ann.wait_for_message(1)
            assert item.text == "code ['INVITE']"
            query_id = await ann.press(item, "cat")
            assert await ann.wait_for_answer(query_id) == "Thanks!"
            done = await ann.wait_for_message(lambda m: m.text == "You chose answer:cat")
            assert done.buttons == [] and done.edit_count == 1
        finally:
            await app.updater.stop()
            await app.stop()
    assert emu.pending_updates == []  # the last getUpdates confirmed everything
