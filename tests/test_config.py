"""The config file: every setting declared once, errors that name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatlabel.config import ConfigError, example_toml, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_is_generated_from_the_models() -> None:
    assert (ROOT / "config" / "example.toml").read_text(encoding="utf-8") == example_toml(), (
        "config/example.toml is stale: regenerate it with "
        "python -c 'from chatlabel.config import example_toml; print(example_toml(), end=\"\")'"
    )


def test_example_loads_with_every_section() -> None:
    cfg = load_config(ROOT / "config" / "example.toml")
    assert cfg.project[0].name == "tweet-sentiment"
    assert cfg.telegram is not None and cfg.slack is not None and cfg.web is not None
    assert cfg.database_path() == ROOT / "config" / "chatlabel.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[[project]]\nname = 'p'\nlabels = ['a', 'b']\noverlp = 3\n",
            "project[0].overlp: unknown setting",
        ),
        ("[[project]]\nname = 'p'\nlabels = ['a']\n", "needs at least two labels"),
        (
            "[[project]]\nname = 'p'\nlabels = ['a','b']\noverlap = 4\nmax_overlap = 2\n",
            "max_overlap (2) is below overlap (4)",
        ),
        ("[[project]]\nname = 'Bad Name'\nlabels = ['a','b']\n", "project[0].name"),
        ("[[project]]\nname = 'p'\nlabels = ['a','b']\nagreement = 2\n", "project[0].agreement"),
        (
            "[[project]]\nname = 'p'\nlabels = ['a','b']\n[[project]]\nname = 'p'\nlabels = ['a','b']\n",
            "project names repeat: p",
        ),
        ("[access]\nmode = 'secret'\n", "access.mode"),
        ("[storage\n", "not valid TOML"),
        (
            "[[project]]\nname = 'r'\nkind = 'rating'\nlabels = ['low', 'high']\n",
            "rating labels must be numbers",
        ),
        (  # a 0-1000 scale cannot be paged through in chat
            "[[project]]\nname = 'scale'\nkind = 'rating'\nlabels = ["
            + ", ".join(f"'{n}'" for n in range(1001))
            + "]\n",
            "project[0]: project 'scale' has 1001 labels; at most 240 can be offered in chat",
        ),
        (  # an empty caption would be a button Telegram refuses
            "[[project]]\nname = 'p'\nlabels = ['a','b']\n[project.translations.es]\n"
            "labels = { a = ' ' }\n",
            "project 'p': translations.es.labels: the caption of 'a' needs 1 to 60 characters",
        ),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.toml"
    path.write_text("[storage]\ndatabase = 'data/x.db'\n", encoding="utf-8")
    assert load_config(path).database_path() == tmp_path / "sub" / "data" / "x.db"


@pytest.mark.parametrize(
    ("section", "value", "said"),
    [
        ({"after": "2 hours"}, "reminders.after", "is not a duration"),
        ({"quiet_hours": "22-8"}, "reminders.quiet_hours", "is not a time of day"),
        ({"timezone": "Mars/Olympus"}, "reminders.timezone", "is not a time zone"),
        ({"max_per_day": 0}, "reminders.max_per_day", "greater than or equal to 1"),
    ],
)
def test_a_bad_reminder_setting_names_the_file_and_key(
    tmp_path: Path, section: dict[str, object], value: str, said: str
) -> None:
    path = tmp_path / "c.toml"
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in section.items())
    path.write_text(f"[[project]]\nname = 'p'\nlabels = ['a', 'b']\n[project.reminders]\n{body}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path.resolve()}: project[0].{value}: " in str(err.value) and said in str(err.value)


def test_reminders_and_digest_read_as_the_core_needs_them(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[[project]]\nname = 'p'\nlabels = ['a', 'b']\ntimezone = 'Europe/Berlin'\n"
        "[project.reminders]\nafter = '90m'\nevery = '12h'\nquiet_hours = ''\n"
        "[project.digest]\nat = '07:30'\n"
    )
    p = load_config(path).project[0]
    rule = p.reminder_rule()
    assert rule is not None and (rule.after, rule.every, rule.quiet) == (5400.0, 43200.0, None)
    assert str(rule.tz) == "Europe/Berlin" and p.digest is not None and p.digest.at == "07:30"
    plain = load_config(ROOT / "config" / "example.toml").project[0]
    assert plain.reminder_rule() is None and plain.digest is None  # off unless written
    assert str(plain.zone()) == "UTC"
