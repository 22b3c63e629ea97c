"""The message catalog: every sentence people read, one TOML file per language.

Why TOML files rather than gettext: a translator edits one readable file per language with
no compile step, keys (not English sentences) name each text so the English can change without
orphaning translations, and a test checks every language has every key with the same
placeholders. Babel supplies what a data file cannot: each language's plural rules and its
number, percent and duration formats.
"""

from __future__ import annotations

import math
import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from babel import Locale
from babel.dates import format_skeleton, format_time, format_timedelta
from babel.numbers import format_compact_decimal, format_decimal, format_percent
from babel.units import format_unit

DEFAULT = "en"
PLURAL_FORMS = ("zero", "one", "two", "few", "many", "other")
_TAG = re.compile(r"^[A-Za-z]{2,3}")


class CatalogError(ValueError):
    """A catalog file is missing, malformed, or misses a key."""


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str | dict[str, str]]:
    out: dict[str, str | dict[str, str]] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, dict) and value and set(value) <= set(PLURAL_FORMS):
            out[name] = {k: str(v) for k, v in value.items()}
        elif isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            raise CatalogError(f"{name}: expected a text or a table, got {type(value).__name__}")
    return out


def placeholders(text: str | Mapping[str, str]) -> set[str]:
    """The {names} a text (or every form of a plural text) uses."""
    forms = text.values() if isinstance(text, Mapping) else [text]
    return {f for form in forms for _, f, _, _ in string.Formatter().parse(form) if f}


class Texts:
    """The catalog in one language: `t("key", name=value)` gives the sentence."""

    def __init__(
        self, lang: str, texts: Mapping[str, str | dict[str, str]], fallback: Texts | None
    ):
        self.lang = lang
        self._texts = texts
        self._fallback = fallback
        self._locale = Locale.parse(lang)

    def __call__(self, key: str, **params: Any) -> str:
        """The text for `key` with its placeholders filled (numbers in this language's style)."""
        text = self._texts.get(key)
        if text is None:
            if self._fallback is None:
                raise KeyError(f"no text {key!r} in the {self.lang} catalog")
            return self._fallback(key, **params)
        if isinstance(text, dict):
            n = params.get("n", 0)
            form = self._locale.plural_form(abs(n)) if isinstance(n, int | float) else "other"
            text = text.get(form) or text["other"]
        shown = {k: self._show(v) for k, v in params.items()}
        return text.format(**shown)

    def has(self, key: str) -> bool:
        """Whether this language (not its fallback) has `key`."""
        return key in self._texts

    def _show(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return value
        return self.number(value)

    def number(self, x: float, digits: int = 0) -> str:
        """A number written this language's way (12,345.6 or 12 345,6)."""
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(x, format=pattern, locale=self._locale)

    def percent(self, x: float | None) -> str:
        """A share as a percentage; 'n/a' in this language when unknown."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return self("common.not_available")
        return format_percent(x, locale=self._locale)

    def decimal(self, x: float | None, digits: int = 3) -> str:
        """A figure such as a kappa, with fixed digits; 'n/a' when unknown."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return self("common.not_available")
        return self.number(x, digits)

    def duration(self, seconds: float | None) -> str:
        """A rough duration in words ("5 hours", "5 часов"); 'unknown' when None."""
        if seconds is None:
            return self("common.unknown")
        return format_timedelta(
            timedelta(seconds=seconds), threshold=1.5, locale=self._locale, format="long"
        )

    def size(self, n_bytes: float) -> str:
        """A size in this language ("1.5 GB", "1,5 ГБ")."""
        for unit, scale in (("gigabyte", 1e9), ("megabyte", 1e6), ("kilobyte", 1e3)):
            if n_bytes >= scale:
                value = round(n_bytes / scale, 1)
                return format_unit(value, f"digital-{unit}", length="short", locale=self._locale)
        return format_unit(int(n_bytes), "digital-byte", length="short", locale=self._locale)

    def compact(self, x: float) -> str:
        """A number shortened for an axis ("1.5K", "1,5 тыс."); small ones are written whole."""
        return format_compact_decimal(
            x, format_type="short", fraction_digits=1, locale=self._locale
        )

    def when(self, moment: datetime, date: str = "yMMMd", time: bool = True) -> str:
        """A date and/or time written this language's way.

        `date` is a CLDR skeleton ("yMMMd": "Nov 5, 2024"; "MMMd"; "E": a weekday), "" for no
        date; `time` adds the hour in this language's short form ("3:04 PM", "15:04").
        """
        day = format_skeleton(date, moment, locale=self._locale) if date else ""
        hour = format_time(moment, "short", locale=self._locale) if time else ""
        if day and hour:
            # CLDR's own glue ("{1}, {0}", "{1} {0}"): the order and comma differ by language.
            return str(self._locale.datetime_formats["short"]).format(hour, day)
        return day or hour

    def join(self, parts: Iterable[str]) -> str:
        """Items joined as a list in this language ("a, b, c")."""
        return self("common.list_separator").join(parts)

    @property
    def name(self) -> str:
        """The language's own name for itself ("español")."""
        return self._locale.get_display_name(self.lang) or self.lang


class Catalog:
    """Every shipped language, loaded once; pick a person's with `texts(lang)`."""

    def __init__(self, files: Mapping[str, str] | None = None) -> None:
        raw = files if files is not None else _shipped()
        if DEFAULT not in raw:
            raise CatalogError(f"the catalog has no {DEFAULT}.toml")
        tables: dict[str, dict[str, str | dict[str, str]]] = {}
        for lang, source in raw.items():
            try:
                tables[lang] = _flatten(tomllib.loads(source))
            except tomllib.TOMLDecodeError as exc:
                raise CatalogError(f"{lang}.toml: {exc}") from None
        base = Texts(DEFAULT, tables[DEFAULT], None)
        self._texts = {lang: Texts(lang, t, base) for lang, t in tables.items() if lang != DEFAULT}
        self._texts[DEFAULT] = base
        self.tables = tables

    @property
    def languages(self) -> list[str]:
        """The language codes shipped, English first."""
        return [DEFAULT, *sorted(lang for lang in self._texts if lang != DEFAULT)]

    def texts(self, lang: str | None) -> Texts:
        """The catalog in `lang` (or the nearest shipped language, English as the last resort)."""
        return self._texts[self.best(lang) or DEFAULT]

    def best(self, *hints: str | None) -> str | None:
        """The first hint that names a shipped language ("es-ES", "pt_BR", "uk"), if any."""
        for hint in hints:
            m = _TAG.match((hint or "").strip())
            if m and m.group(0).lower() in self._texts:
                return m.group(0).lower()
        return None


@cache
def _shipped() -> dict[str, str]:
    folder = resources.files(__package__) / "locales"
    return {
        f.name.removesuffix(".toml"): f.read_text(encoding="utf-8")
        for f in folder.iterdir()
        if f.name.endswith(".toml")
    }
