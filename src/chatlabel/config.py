"""The deployment config: one TOML file with storage, access, platforms and projects."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .core.model import Rules
from .core.routing import Routing
from .core.timing import ReminderRule, parse_clock, parse_duration, parse_quiet_hours

MIN_INVITE_CODE = 8


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file, key and problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Storage(_Section):
    """Where chatlabel keeps its data."""

    database: Path = Field(Path("chatlabel.db"), description="SQLite file (relative to this file)")
    url: str = Field(
        "",
        description="Instead of database: sqlite:///FILE or postgresql://USER@HOST:5432/DB "
        "(a local server's socket: postgresql://USER@/DB?host=/SOCKET/DIR)",
    )
    password_env: str = Field(
        "", description="Variable holding the PostgreSQL password (never put it in the url)"
    )
    pool_size: int = Field(
        4, ge=1, le=64, description="PostgreSQL connections per process (one per worker thread)"
    )
    media_cache: Path = Field(
        Path("media-cache"), description="Folder for prepared images (relative to this file)"
    )
    media_roots: list[Path] = Field(
        default_factory=list,
        description="Folders media may come from besides the data file's own (import)",
    )
    # Free space is low under the smaller of the two: 500 MiB on a big disk, 10 % on a small one.
    min_free_mb: float = Field(
        500, ge=0, description="Warn when free space by the database is under this many MiB"
    )
    min_free_percent: float = Field(
        10, ge=0, le=100, description="...or this % of its disk, whichever is less (0 = off)"
    )
    space_check_seconds: float = Field(
        60, ge=1, description="How often `chatlabel run` checks free space"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        url = url.strip()
        if not url:
            return url
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                "must be sqlite:///FILE or postgresql://USER@HOST:PORT/DATABASE, "
                f"not {url.split('://')[0]!r}://..."
            )
        if scheme == "sqlite":
            if not rest.startswith("/") or len(rest) < 2:
                raise ValueError("a SQLite url is sqlite:///FILE (relative) or sqlite:////ABS/FILE")
            return url
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(url)
        if parts.password is not None or "password=" in parts.query:
            raise ValueError(
                "the password must not be in the file: name the variable that holds it in "
                "[storage] password_env (and leave it out of the url)"
            )
        # A server on this machine is reached faster through its Unix socket (no TCP stack
        # on either side): libpq's form names the socket's directory in the query.
        socket_dir = parse_qs(parts.query).get("host", [""])[-1]
        if socket_dir and not socket_dir.startswith("/"):
            raise ValueError("host=... in a PostgreSQL url is a socket directory: an absolute path")
        if not (parts.hostname or socket_dir) or not parts.path.strip("/"):
            raise ValueError(
                "a PostgreSQL url is postgresql://USER@HOST:PORT/DATABASE, or "
                "postgresql://USER@/DATABASE?host=/SOCKET/DIRECTORY for a Unix socket"
            )
        return url

    @property
    def is_postgres(self) -> bool:
        """True when the data lives in PostgreSQL."""
        return self.url.startswith(("postgresql://", "postgres://"))


class Quality(_Section):
    """How annotators are measured with gold items."""

    qualification: int = Field(4, ge=0, description="Gold items a newcomer answers first")
    gold_rate: float = Field(0.1, ge=0, le=1, description="Share of gold among later items")
    min_gold_accuracy: float = Field(0.7, ge=0, le=1, description="Accuracy needed to keep going")
    gate: Literal["relative", "absolute"] = Field(
        "relative",
        description="relative: the bar is halfway from chance to the crowd, at most "
        "min_gold_accuracy | absolute: min_gold_accuracy",
    )
    suspend_confidence: float = Field(
        0.95, gt=0.5, lt=1, description="How sure we must be that accuracy is low to suspend"
    )
    gold_feedback: bool = Field(True, description="Show the right answer after a missed gold item")
    min_seconds: float = Field(
        0.0, ge=0, description="Answers faster than this count as careless (0 = off)"
    )
    max_same_run: int = Field(
        0, ge=0, description="This many identical labels in a row counts as careless (0 = off)"
    )


class Translation(_Section):
    """A project's texts in one more language (whatever is left out stays as configured)."""

    title: str = Field("", description="The title in this language")
    instructions: str = Field("", description="The instructions in this language")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Captions of labels in this language; exported values never change",
    )


# Choices a project may offer: chat shows them 24 to a page (conversation/render.PAGE) with
# ◀ ▶, and beyond ten pages nobody can find their label by paging.
MAX_LABELS = 240
CAPTION_CHARS = 60  # a label's caption on a button (Slack cuts button texts at 75)


def zone(name: str) -> tzinfo:
    """A time zone by its IANA name ("Europe/Berlin", "UTC")."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone: use a name like 'Europe/Berlin' or 'UTC'"
        ) from None


def _valid_zone(name: str) -> str:
    if name:
        zone(name)
    return name


class Reminders(_Section):
    """Nudges to members who walked away while work waits for them (absent = no reminders)."""

    after: str = Field("2h", description="Idle this long (no answer) before a reminder")
    every: str = Field("1d", description="At least this long between two reminders to someone")
    max_per_day: int = Field(1, ge=1, le=24, description="Reminders per person per day")
    quiet_hours: str = Field(
        "22:00-08:00", description="No reminders in this span of local time ('' = none)"
    )
    timezone: str = Field("", description="Time zone of the quiet hours ('' = the project's)")
    max_ignored: int = Field(
        3, ge=0, description="Stop after this many reminders in a row with no answer (0 = never)"
    )

    @field_validator("after", "every")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str) -> str:
        parse_quiet_hours(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _valid_zone(v)


class Digest(_Section):
    """A daily summary for coordinators: the progress chart and what changed (absent = none)."""

    at: str = Field("18:00", description="Local time of day it is sent")
    to: list[str] = Field(
        default_factory=list, description="platform:user ids to send it to ([] = all coordinators)"
    )

    @field_validator("at")
    @classmethod
    def _clock(cls, v: str) -> str:
        parse_clock(v)
        return v


class Model(_Section):
    """Suggestions from a model: a confident one turns an item into a single yes/no check."""

    kind: Literal["import", "builtin-text", "http"] = Field(
        "builtin-text",
        description="import (suggestions come with the items) | builtin-text (learns from "
        "the crowd; pip install 'chatlabel[model]') | http (a Label Studio ML backend)",
    )
    url: str = Field("", description="http: the backend's address; items are POSTed to URL/predict")
    auth_env: str = Field(
        "", description="http: variable holding user:password for HTTP basic auth ('' = none)"
    )
    timeout_seconds: float = Field(30, gt=0, le=600, description="http: one request's limit")
    batch: int = Field(100, ge=1, le=10_000, description="http: items per /predict request")
    auto_threshold: float = Field(
        0.8, gt=0, le=1, description="A suggestion scored at least this needs one check"
    )
    audit_rate: float = Field(
        0.02, ge=0, le=1, description="Share of confident items given full overlap anyway"
    )
    order: Literal["import", "uncertain-first"] = Field(
        "import", description="import | uncertain-first (the least certain items first)"
    )
    retrain_every: int = Field(
        50, ge=1, description="builtin-text: retrain after this many new resolved items"
    )
    min_examples: int = Field(
        20, ge=2, description="builtin-text: labeled items (gold included) before it first trains"
    )


class LabelStudio(_Section):
    """How tasks look in Label Studio's JSON (imports, exports and the http model)."""

    from_name: str = Field("label", description="Name of the labeling control (<Choices name>)")
    to_name: str = Field("text", description="Name of the object it labels (<Text name>)")
    text_key: str = Field("text", description="The data field holding an item's text ($text)")


def extra_installed(module: str) -> bool:
    """True when an optional dependency can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked with sys.modules[name] = None
        return False


class Project(_Section):
    """One labeling job."""

    name: str = Field(
        ..., pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="Stable id (a-z, 0-9, - and _)"
    )
    title: str = Field("", description="Name shown to annotators (defaults to name)")
    instructions: str = Field("", description="What annotators are asked to do")
    kind: Literal["single", "multi", "rating", "verify", "text"] = Field(
        "single", description="single | multi | rating | verify | text"
    )
    labels: list[str] = Field(default_factory=list, description="The choices (rating: the scale)")
    overlap: int = Field(3, ge=1, le=50, description="Answers per item from different annotators")
    max_overlap: int = Field(5, ge=1, le=100, description="More answers while they disagree")
    agreement: float = Field(0.6, gt=0, le=1, description="Share of votes the leading label needs")
    method: Literal["majority", "weighted", "dawid-skene"] = Field(
        "majority", description="majority | weighted | dawid-skene"
    )
    confidence_target: float = Field(
        0.0, ge=0, lt=1, description="Stop early once a verdict is this confident (0 = off)"
    )
    lease_seconds: int = Field(900, ge=10, description="An unanswered item goes back after this")
    undo_seconds: int = Field(60, ge=0, description="How long an answer can be taken back")
    max_image_side: int = Field(1280, ge=64, le=10000, description="Images are resized to this")
    language: str = Field(
        "",
        pattern=r"^([a-z]{2,3})?$",
        description="Language for people whose platform gives none (e.g. 'es'; '' = English)",
    )
    translations: dict[str, Translation] = Field(
        default_factory=dict,
        description="The project's texts in more languages: one table per language code",
    )
    timezone: str = Field(
        "", description="Time zone of streak days and the digest ('' = the reminders' or UTC)"
    )
    leaderboard: bool = Field(
        False, description="Offer /top: a board of agreed answers (people opt in to show names)"
    )
    report_quorum: int = Field(
        2, ge=1, description="Reports from this many people take an item out until decided"
    )
    quality: Quality = Field(default_factory=Quality, description="Gold and quality rules")
    model: Model | None = Field(None, description="absent: no suggestions, no routing")
    label_studio: LabelStudio = Field(
        default_factory=LabelStudio, description="Label Studio's names for this project"
    )
    reminders: Reminders | None = Field(None, description="Reminders to idle members")
    digest: Digest | None = Field(None, description="A daily summary for coordinators")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _valid_zone(v)

    def zone(self) -> tzinfo:
        """The project's time zone: its own, else its reminders', else UTC."""
        name = self.timezone or (self.reminders.timezone if self.reminders else "") or "UTC"
        return zone(name)

    def reminder_rule(self) -> ReminderRule | None:
        """The reminder settings as the core reads them (None: no reminders)."""
        r = self.reminders
        if r is None:
            return None
        return ReminderRule(
            after=parse_duration(r.after),
            every=parse_duration(r.every),
            max_per_day=r.max_per_day,
            quiet=parse_quiet_hours(r.quiet_hours),
            tz=zone(r.timezone) if r.timezone else self.zone(),
            max_ignored=r.max_ignored,
        )

    @model_validator(mode="after")
    def _check(self) -> Project:
        if self.max_overlap < self.overlap:
            raise ValueError(f"max_overlap ({self.max_overlap}) is below overlap ({self.overlap})")
        if self.kind in ("single", "multi", "rating") and len(self.labels) < 2:
            raise ValueError(f"kind {self.kind!r} needs at least two labels")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels repeat")
        if any(not lab.strip() or len(lab) > CAPTION_CHARS for lab in self.labels):
            raise ValueError(f"every label needs 1 to {CAPTION_CHARS} characters")
        if len(self.labels) > MAX_LABELS:
            raise ValueError(
                f"project {self.name!r} has {len(self.labels)} labels; at most {MAX_LABELS} "
                f"can be offered in chat (10 pages of 24 buttons)"
            )
        if self.kind == "rating":
            try:
                [float(x) for x in self.labels]
            except ValueError:
                raise ValueError("rating labels must be numbers, e.g. ['1', '2', '3']") from None
        if not self.title:
            self.title = self.name
        if self.model is not None:
            if self.kind != "single":
                raise ValueError(
                    f"model: suggestions route single-choice items only, not kind {self.kind!r}"
                )
            if self.model.kind == "http" and not self.model.url:
                raise ValueError("model.url: kind 'http' needs the backend's address")
            if self.model.kind == "builtin-text" and not extra_installed("sklearn"):
                raise ValueError(
                    "model.kind: 'builtin-text' needs scikit-learn, which is not installed: "
                    "pip install 'chatlabel[model]'"
                )
        for lang, t in self.translations.items():
            if not lang.isascii() or not lang.isalpha() or not 2 <= len(lang) <= 3:
                raise ValueError(f"translations.{lang}: not a language code such as 'es' or 'pt'")
            unknown = sorted(set(t.labels) - set(self.labels))
            if unknown:
                raise ValueError(f"translations.{lang}.labels: {unknown[0]!r} is not a label")
            for label, caption in t.labels.items():
                if not caption.strip() or len(caption) > CAPTION_CHARS:
                    raise ValueError(
                        f"project {self.name!r}: translations.{lang}.labels: the caption of "
                        f"{label!r} needs 1 to {CAPTION_CHARS} characters (it is a button)"
                    )
        return self

    def routing(self) -> Routing | None:
        """The core's view of this project's routing (None without a model section)."""
        m = self.model
        if m is None:
            return None
        return Routing(m.auto_threshold, m.audit_rate, m.order == "uncertain-first")

    def rules(self) -> Rules:
        """The core's view of this project's rules."""
        q = self.quality
        return Rules(
            kind=self.kind,
            labels=tuple(self.labels),
            overlap=self.overlap,
            max_overlap=self.max_overlap,
            agreement=self.agreement,
            method=self.method,
            confidence_target=self.confidence_target or None,
            qualification=q.qualification,
            gold_rate=q.gold_rate,
            min_gold_accuracy=q.min_gold_accuracy,
            gate=q.gate,
            suspend_confidence=q.suspend_confidence,
            min_seconds=q.min_seconds,
            max_same_run=q.max_same_run,
        )


class Access(_Section):
    """Who may label, who coordinates, who settles escalations."""

    mode: Literal["open", "invite", "allowlist"] = Field(
        "open", description="open | invite | allowlist"
    )
    invite_codes: list[str] = Field(
        default_factory=list,
        description="Codes accepted by /start CODE (8+ characters; chatlabel invite makes one)",
    )
    coordinators: list[str] = Field(default_factory=list, description="platform:user ids")
    experts: list[str] = Field(default_factory=list, description="platform:user ids who settle")
    allowlist: list[str] = Field(default_factory=list, description="platform:user ids allowed in")

    @field_validator("invite_codes")
    @classmethod
    def _strong_codes(cls, codes: list[str]) -> list[str]:
        # A short code falls to guessing even at a few tries per person and minute.
        for n, code in enumerate(codes, start=1):
            if len(code.strip()) < MIN_INVITE_CODE:
                raise ValueError(
                    f"invite code {n} has {len(code.strip())} characters; use at least "
                    f"{MIN_INVITE_CODE} (`chatlabel invite CONFIG` prints a strong one)"
                )
        return codes


class Telegram(_Section):
    """The Telegram bot."""

    token_env: str = Field("CHATLABEL_TELEGRAM_TOKEN", description="Variable holding the bot token")
    base_url: str = Field("", description="Another Bot API server; empty = Telegram's")
    base_file_url: str = Field("", description="Its file URL; empty = derived from base_url")
    mode: Literal["polling", "webhook"] = Field("polling", description="polling | webhook")
    webhook_url: str = Field("", description="Public URL Telegram posts updates to")
    webhook_listen: str = Field("127.0.0.1", description="Address the webhook server binds")
    webhook_port: int = Field(8443, ge=1, le=65535, description="Port the webhook server binds")
    secret_token_env: str = Field(
        "CHATLABEL_TELEGRAM_WEBHOOK_SECRET", description="Variable holding the webhook secret"
    )
    bot_username: str = Field(
        "",
        pattern=r"^@?([A-Za-z][A-Za-z0-9_]{3,31})?$",
        description="The bot's @username, for invite links (chatlabel invite)",
    )


class Slack(_Section):
    """The Slack bot."""

    bot_token_env: str = Field("CHATLABEL_SLACK_BOT_TOKEN", description="Variable: bot token")
    signing_secret_env: str = Field(
        "CHATLABEL_SLACK_SIGNING_SECRET", description="Variable: signing secret"
    )
    app_token_env: str = Field(
        "CHATLABEL_SLACK_APP_TOKEN", description="Variable: app token (set = Socket Mode)"
    )
    base_url: str = Field("", description="Another Web API server; empty = Slack's")
    host: str = Field("127.0.0.1", description="HTTP mode: address to listen on")
    port: int = Field(3000, ge=0, le=65535, description="HTTP mode: port to listen on")
    command: str = Field("/label", pattern=r"^/[a-z0-9_-]+$", description="The slash command")


class Web(_Section):
    """The browser chat: a page where people label without Telegram or Slack."""

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 = every network)")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on")
    base_url: str = Field(
        "",
        pattern=r"^(https?://[^/?#\s]+/?)?$",
        description="Public address in links (https://label.example.org); empty = http://HOST:PORT",
    )
    secret_env: str = Field(
        "CHATLABEL_WEB_SECRET",
        description="Variable: cookie-signing secret (unset = one generated beside the database)",
    )
    session_days: float = Field(
        30, gt=0, le=3650, description="How long a browser stays signed in after its last visit"
    )


class Config(_Section):
    """A whole deployment."""

    storage: Storage = Field(default_factory=Storage, description="Where data lives")
    project: list[Project] = Field(default_factory=list, description="The labeling projects")
    access: Access = Field(default_factory=Access, description="Who may do what")
    telegram: Telegram | None = Field(None, description="Telegram bot (absent = off)")
    slack: Slack | None = Field(None, description="Slack bot (absent = off)")
    web: Web | None = Field(None, description="Browser chat (absent = off)")
    path: Path = Field(Path("."), exclude=True, description="The file this came from")

    @model_validator(mode="after")
    def _one_database(self) -> Config:
        if self.storage.url and "database" in self.storage.model_fields_set:
            raise ValueError("[storage] has both url and database: keep one")
        return self

    @model_validator(mode="after")
    def _unique_projects(self) -> Config:
        names = [p.name for p in self.project]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"project names repeat: {', '.join(dupes)}")
        return self

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the file are resolved against."""
        return self.path.parent

    def database_path(self) -> Path:
        """The SQLite file, resolved against the config's folder.

        With a PostgreSQL url there is no file: this is then where files that live "beside the
        database" go (the web chat's secret), named after the config file.
        """
        url = self.storage.url
        if url.startswith("sqlite:///"):
            rest = url[len("sqlite:///") :]
            return self._resolve(Path(rest))
        if self.storage.is_postgres:
            return self.path.with_suffix(".db")
        return self._resolve(self.storage.database)

    def storage_url(self) -> str:
        """Where the data lives, as a URL: sqlite:///ABSOLUTE/FILE or postgresql://..."""
        if self.storage.is_postgres:
            return self.storage.url
        return f"sqlite:///{self.database_path()}"

    def storage_password(self) -> str | None:
        """The PostgreSQL password, from the variable [storage] password_env names."""
        var = self.storage.password_env
        return secret(var) if var else None

    def media_cache_path(self) -> Path:
        """The prepared-media folder, resolved against the config's folder."""
        return self._resolve(self.storage.media_cache)

    def web_secret_path(self) -> Path:
        """Where a generated cookie-signing secret is kept: beside the database."""
        db = self.database_path()
        return db.with_name(db.stem + ".web-secret")

    def media_roots_paths(self) -> list[Path]:
        """Extra folders imported media may come from, resolved against the config's folder."""
        return [self._resolve(p) for p in self.storage.media_roots]

    def _resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base_dir / p)

    def get_project(self, name: str | None) -> Project:
        """The named project, or the only one; ConfigError names the choices otherwise."""
        if name is None:
            if len(self.project) == 1:
                return self.project[0]
            names = ", ".join(p.name for p in self.project) or "none"
            raise ConfigError(f"{self.path}: choose a project with --project ({names})")
        for p in self.project:
            if p.name == name:
                return p
        names = ", ".join(p.name for p in self.project) or "none"
        raise ConfigError(f"{self.path}: no project named {name!r} (projects: {names})")


def secret(var: str) -> str | None:
    """A secret read from the environment (never from the file); None when unset or empty."""
    value = os.environ.get(var, "").strip()
    return value or None


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate a parsed TOML document; ConfigError lists every problem with its key."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(x for x in err["loc"] if x not in ("function-after",))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting (check the spelling; see config/example.toml)"
            lines.append(f"{path}: {_key(loc)}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    cfg.path = path
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse_config(data, p.resolve())


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _section(title: str, model: type[BaseModel], sample: dict[str, Any], out: list[str]) -> None:
    out.append(f"\n# {model.__doc__}\n{title}")
    nested, tables, optional = [], [], []
    for name, field in model.model_fields.items():
        if name == "path":
            continue
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            nested.append((name, field.annotation))
            continue
        args = get_args(field.annotation)
        if len(args) == 2 and args[1] is type(None) and issubclass(args[0], BaseModel):
            optional.append((name, args[0]))  # a section that is off unless written
            continue
        if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            tables.append((name, field.description, args[1]))  # a table per key, e.g. language
            continue
        if name in sample:
            value = sample[name]
        elif field.is_required():
            continue
        else:
            value = field.get_default(call_default_factory=True)
        out.append(f"{name} = {_toml_value(value)}".ljust(43) + f" # {field.description}")
    for name, sub in nested:
        header = title.strip("[]")
        _section(f"[{header}.{name}]", sub, {}, out)
    for name, description, sub in tables:
        # Optional and keyed (one per language): shown commented out, as an example.
        example: list[str] = []
        _section(f"[{title.strip('[]')}.{name}.es]", sub, {}, example)
        out.append(f"\n# {description}")
        out += [f"# {line}".rstrip() for line in "\n".join(example).strip().splitlines()[1:]]
    for name, sub in optional:
        # Off unless present: shown commented out, with every setting's default.
        example = []
        _section(f"[{title.strip('[]')}.{name}]", sub, {}, example)
        lines = "\n".join(example).splitlines()
        out += [x if x.startswith("#") or not x else f"# {x}".rstrip() for x in lines]


def example_toml() -> str:
    """config/example.toml, generated from the models so every setting and help is declared once."""
    out = [
        "# chatlabel: every setting with its default and what it does.",
        "# Secrets are never written here: the file names the environment variables that hold",
        "# them. Relative paths are relative to this file.",
    ]
    _section("[storage]", Storage, {}, out)
    _section(
        "[[project]]",
        Project,
        {
            "name": "tweet-sentiment",
            "title": "Tweet sentiment",
            "instructions": "Read the tweet and pick its sentiment.",
            "labels": ["positive", "negative", "neutral"],
        },
        out,
    )
    _section("[access]", Access, {}, out)
    _section("[telegram]", Telegram, {}, out)
    _section("[slack]", Slack, {}, out)
    _section("[web]", Web, {}, out)
    return "\n".join(out) + "\n"
