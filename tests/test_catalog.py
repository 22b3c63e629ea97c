"""The message catalog: every shipped language says everything English says, the same way.

Each check is a function that returns the problems it finds, so the same check runs over the
shipped files and (in the self-tests at the bottom) over files broken on purpose: a check that
cannot see a missing key, a renamed placeholder or a forgotten English sentence would pass
forever.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from functools import cache
from importlib import resources

import pytest
from babel import Locale

from chatlabel.conversation.catalog import DEFAULT, Catalog, placeholders

Text = str | dict[str, str]
Tables = Mapping[str, Mapping[str, Text]]

# Keys whose translation may be word for word the English: the same word in that language.
# Keys with no letters outside their {placeholders} (◀, "{page}/{pages}", "✅ {choice}", the
# list separator, the report rows) are not sentences and are never compared; everything else
# is listed here per language, so "no" passes in Spanish but would be caught in Portuguese.
SAME_AS_ENGLISH = {
    ("es", "item.no"),  # "no" is Spanish for no
    ("es", "item.no_button"),  # "❌ No": the same word on the button
    ("es", "item.audio"),  # "audio" is the Spanish word too
    ("pt", "web.menu"),  # "Menu" is the Portuguese word too
    ("pt", "report.item"),  # "Item": the report's column, the Portuguese word the catalog uses
    ("pt", "report.status"),  # "Status": as in the Portuguese /annotators header
}

# Parameters that are numbers (they choose plural forms); every other placeholder is a string.
NUMBERS = {"n"}
# Counts that reach every plural category of the shipped languages (1.5 is "other" in ru/uk).
COUNTS = (0, 1, 2, 3, 5, 11, 12, 21, 22, 25, 101, 111, 1.5)

# Captions on buttons must fit a phone (render.ROW_CHARS: ~40 characters across a screen).
BUTTONS = (
    "item.skip",
    "item.done",
    "item.undo",
    "item.yes_button",
    "item.no_button",
    "item.write_button",
    "home.start",
    "home.export",
    "item.report",
    "problem_button.broken",
    "problem_button.offensive",
    "problem_button.unclear",
    "problem_button.other",
    "problem_button.unsure",
    "problem_button.back",
    "reminder.continue",
    "announce.send",
    "announce.cancel_button",
    "announce.stop_button",
    "reports.restore",
    "reports.remove",
)
BUTTON_MAX = 32
SLACK_MODAL = ("platform.answer_title", "platform.answer_save", "platform.answer_cancel")
SLACK_MODAL_MAX = 24  # Slack cuts a modal's title, submit and close texts at 24 characters
TOAST_MAX = 200  # Telegram's answerCallbackQuery shows at most 200 characters
MENU_MAX = 256  # Telegram's BotCommand description


@cache
def shipped_sources() -> dict[str, str]:
    """Each shipped language's TOML text, by language code."""
    folder = resources.files("chatlabel.conversation") / "locales"
    return {
        f.name.removesuffix(".toml"): f.read_text(encoding="utf-8")
        for f in folder.iterdir()
        if f.name.endswith(".toml")
    }


@cache
def shipped() -> Catalog:
    return Catalog()


def forms(text: Text) -> dict[str, str]:
    """A text's forms by plural category ("other" for a plain text)."""
    return dict(text) if isinstance(text, dict) else {"other": text}


def categories(lang: str) -> set[str]:
    """The plural categories `lang` uses for the whole numbers 0..200."""
    rule = Locale.parse(lang).plural_form
    return {rule(n) for n in range(201)}


def sample(names: set[str]) -> dict[str, object]:
    """Parameters for a text that uses `names`: a count for {n}, a word for the rest."""
    return {name: 7 if name in NUMBERS else f"<{name}>" for name in names}


def is_sentence(text: str) -> bool:
    """Whether a text has words of its own (not just symbols around placeholders)."""
    return any(ch.isalpha() for ch in re.sub(r"\{[^{}]*\}", "", text))


# -- the checks --------------------------------------------------------------------------------


def key_problems(tables: Tables) -> list[str]:
    """Keys a language misses or has that English has not, and keys out of English's order."""
    en = list(tables[DEFAULT])
    out = []
    for lang, table in tables.items():
        missing = [k for k in en if k not in table]
        extra = [k for k in table if k not in tables[DEFAULT]]
        out += [f"{lang}: missing {k}" for k in missing]
        out += [f"{lang}: {k} is not in {DEFAULT}.toml" for k in extra]
        if not missing and not extra and list(table) != en:
            out.append(f"{lang}: keys are not in {DEFAULT}.toml's order (keep files diffable)")
    return out


def placeholder_problems(tables: Tables) -> list[str]:
    """Placeholders that differ from English (over all forms; no form may add a name)."""
    out = []
    for lang, table in tables.items():
        for key, text in table.items():
            if key not in tables[DEFAULT]:
                continue
            want = placeholders(tables[DEFAULT][key])
            got = placeholders(text)
            if got != want:
                out.append(f"{lang}: {key} uses {sorted(got)}, English uses {sorted(want)}")
            for form, value in forms(text).items():
                added = placeholders(value) - want
                if added:
                    out.append(f"{lang}: {key}.{form} adds {sorted(added)}")
    return out


def plural_problems(tables: Tables) -> list[str]:
    """Plural tables without `other`, without a form their language needs, or with a form it
    never uses. A table with only `other` says the same for every count (e.g. "Answers: {n}")."""
    out = []
    for lang, table in tables.items():
        needed = categories(lang)
        known = set(Locale.parse(lang).plural_form.tags) | {"other"}
        for key, text in table.items():
            if not isinstance(text, dict):
                continue
            if "other" not in text:
                out.append(f"{lang}: {key} has no 'other' form (the fallback for any count)")
            for form in sorted(set(text) - known):
                out.append(f"{lang}: {key} has a {form!r} form, which {lang} never uses")
            if set(text) != {"other"}:
                for form in sorted(needed - set(text)):
                    out.append(f"{lang}: {key} lacks the {form!r} form {lang} needs")
    return out


def format_problems(catalog: Catalog) -> list[str]:
    """Texts that fail to format with sample parameters, or leave braces behind."""
    out = []
    for lang, table in catalog.tables.items():
        t = catalog.texts(lang)
        for key, text in table.items():
            params = sample(placeholders(text))
            counts = COUNTS if "n" in params else (None,)
            for n in counts:
                if n is not None:
                    params["n"] = n
                try:
                    shown = t(key, **params)
                except (KeyError, IndexError, ValueError, AttributeError) as exc:
                    out.append(f"{lang}: {key} (n={n}) does not format: {exc!r}")
                    continue
                if "{" in shown or "}" in shown:
                    out.append(f"{lang}: {key} (n={n}) leaves a brace: {shown!r}")
            for form, value in forms(text).items():
                try:
                    string.Formatter().format(value, **sample(placeholders(text)))
                except (KeyError, IndexError, ValueError, AttributeError) as exc:
                    out.append(f"{lang}: {key}.{form} does not format: {exc!r}")
    return out


def copy_problems(tables: Tables, allowed: set[tuple[str, str]] = SAME_AS_ENGLISH) -> list[str]:
    """Sentences left in English (a form equal to any English form of the same key)."""
    out = []
    en = tables[DEFAULT]
    for lang, table in tables.items():
        if lang == DEFAULT:
            continue
        for key, text in table.items():
            if key not in en or (lang, key) in allowed:
                continue
            english = set(forms(en[key]).values())
            for form, value in forms(text).items():
                if value in english and is_sentence(value):
                    out.append(f"{lang}: {key}.{form} is still English: {value!r}")
    return out


# -- the shipped catalog ---------------------------------------------------------------------


def test_the_expected_languages_ship() -> None:
    assert shipped().languages == ["en", "es", "pt", "ru", "uk"]


def test_every_language_has_exactly_the_english_keys() -> None:
    assert key_problems(shipped().tables) == []


def test_placeholders_match_english() -> None:
    assert placeholder_problems(shipped().tables) == []


def test_plural_tables_carry_the_forms_each_language_needs() -> None:
    assert plural_problems(shipped().tables) == []
    # Babel knows the Slavic rules, and the tables that vary really carry them.
    for lang in ("ru", "uk"):
        assert {"one", "few", "many"} <= categories(lang)
        tables = [v for v in shipped().tables[lang].values() if isinstance(v, dict)]
        assert tables and all({"one", "few", "many", "other"} <= set(v) for v in tables)


def test_every_text_formats() -> None:
    assert format_problems(shipped()) == []


def test_no_sentence_is_left_in_english() -> None:
    assert copy_problems(shipped().tables) == []


def test_the_allow_list_is_still_needed() -> None:
    # An entry whose text was translated since is noise that would hide a later copy-paste.
    tables = shipped().tables
    stale = [(lang, key) for lang, key in SAME_AS_ENGLISH if tables[lang][key] != tables["en"][key]]
    assert stale == []


@pytest.mark.parametrize("lang", ["en", "es", "pt", "ru", "uk"])
def test_language_set_names_the_language_in_itself(lang: str) -> None:
    t = shipped().texts(lang)
    said = t("language.set", language=t.name).lower()
    # The name may be inflected ("по-русски", "українською"): its first letters must be there.
    assert t.name.lower()[:5] in said, (lang, said)


@pytest.mark.parametrize("lang", ["en", "es", "pt", "ru", "uk"])
def test_captions_fit_their_places(lang: str) -> None:
    t = shipped().texts(lang)
    table = shipped().tables[lang]
    for key in BUTTONS:
        caption = t(key, **sample(placeholders(table[key])))
        assert len(caption) <= BUTTON_MAX, (lang, key, caption)
    for key in SLACK_MODAL:
        assert len(t(key)) <= SLACK_MODAL_MAX, (lang, key)
    toasts = [k for k in table if k.startswith("press.")]
    toasts += ["command.not_allowed", "reporting.thanks", "announce.already", "reports.decided"]
    for key in toasts:
        assert len(t(key)) <= TOAST_MAX, (lang, key)
    for key in (k for k in table if k.startswith("menu.")):
        assert 0 < len(t(key)) <= MENU_MAX, (lang, key)


def test_a_status_reads_whole_with_and_without_a_reason() -> None:
    for lang in shipped().languages:
        t = shipped().texts(lang)
        bare = t("stats.status", status="S")
        assert bare.rstrip().endswith("S") and "—" not in bare, (lang, bare)
        assert t("stats.status_because", status="S", reason="R.").endswith("R."), lang


def test_best_picks_the_nearest_shipped_language() -> None:
    catalog = shipped()
    assert catalog.best("es-ES") == "es"
    assert catalog.best("pt-BR") == "pt"
    assert catalog.best("pt_PT") == "pt"
    assert catalog.best("uk") == "uk"
    assert catalog.best("ru-RU") == "ru"
    assert catalog.best("de") is None
    assert catalog.best("de", "es-MX") == "es"
    assert catalog.texts("de").lang == "en"
    assert catalog.texts("de")("language.set") == catalog.texts("en")("language.set")


def test_plural_forms_are_chosen_by_count() -> None:
    ru, uk, es = (shipped().texts(lang) for lang in ("ru", "uk", "es"))
    assert ru("reason.same_run", n=1).endswith("1 раз подряд.")
    assert ru("reason.same_run", n=3).endswith("3 раза подряд.")
    assert ru("reason.same_run", n=5).endswith("5 раз подряд.")
    assert uk("item.footer", title="T", n=22) == "T · поки що 22 відповіді"
    assert uk("item.footer", title="T", n=25) == "T · поки що 25 відповідей"
    assert es("item.footer", title="T", n=1) == "T · 1 respuesta hasta ahora"
    assert es("item.footer", title="T", n=0) == "T · 0 respuestas hasta ahora"


# -- the checks catch what they are for ------------------------------------------------------


def broken(lang: str, old: str, new: str) -> Catalog:
    """The shipped catalog with one line of `lang`'s file changed."""
    files = dict(shipped_sources())
    assert old in files[lang], old
    files[lang] = files[lang].replace(old, new, 1)
    return Catalog(files)


def test_a_missing_key_is_caught() -> None:
    catalog = broken("es", 'skip = "Saltar"\n', "")
    assert key_problems(catalog.tables) == ["es: missing item.skip"]


def test_an_extra_key_is_caught() -> None:
    catalog = broken("ru", 'skip = "Пропустить"\n', 'skip = "Пропустить"\nskipp = "x"\n')
    assert key_problems(catalog.tables) == ["ru: item.skipp is not in en.toml"]


def test_a_renamed_placeholder_is_caught() -> None:
    catalog = broken("pt", "Envie {start} para", "Envie {comeco} para")
    problems = placeholder_problems(catalog.tables)
    assert any(p.startswith("pt: idle.not_joined uses ['comeco']") for p in problems)
    assert any("adds ['comeco']" in p for p in problems)


def test_a_missing_plural_form_is_caught() -> None:
    catalog = broken("uk", 'few = "{title} · поки що {n} відповіді", ', "")
    assert plural_problems(catalog.tables) == ["uk: item.footer lacks the 'few' form uk needs"]


def test_a_plural_table_without_other_is_caught() -> None:
    catalog = broken("ru", ', other = "{title} · пока {n} ответа" }', " }")
    assert plural_problems(catalog.tables) == [
        "ru: item.footer has no 'other' form (the fallback for any count)"
    ]


def test_a_form_the_language_never_uses_is_caught() -> None:
    catalog = broken("es", 'footer = { one = "', 'footer = { few = "x {title} {n}", one = "')
    assert plural_problems(catalog.tables) == [
        "es: item.footer has a 'few' form, which es never uses"
    ]


def test_a_text_that_cannot_format_is_caught() -> None:
    catalog = broken("es", "Envía {start} para empezar a etiquetar.", "Envía {start} para {}.")
    assert any(p.startswith("es: idle.not_joined") for p in format_problems(catalog))


def test_a_forgotten_english_sentence_is_caught() -> None:
    catalog = broken(
        "uk", 'dead = "Ця кнопка більше не працює."', 'dead = "That button doesn\'t work any more."'
    )
    assert copy_problems(catalog.tables) == [
        'uk: press.dead.other is still English: "That button doesn\'t work any more."'
    ]
    # The Spanish "no" is allowed in Spanish only.
    catalog = broken("pt", 'no = "não"', 'no = "no"')
    assert copy_problems(catalog.tables) == ["pt: item.no.other is still English: 'no'"]
