"""Who is who in the browser chat: signed session cookies, CSRF tokens, origins, languages.

A session is a random person id and the time it was issued, signed with HMAC-SHA256; nothing
is kept on the server, so sessions survive restarts as long as the secret does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config import ConfigError

log = logging.getLogger("chatlabel.web")

PERSON_ID = re.compile(r"^[a-z2-7]{16}$")  # 10 random bytes in lowercase base32
MAX_LANGUAGE_HEADER = 256  # longer Accept-Language headers are cut, not parsed whole
MAX_LANGUAGES = 8


def load_secret(from_env: str | None, path: Path) -> bytes:
    """The cookie-signing secret: from the environment, else the one kept at `path` (made once).

    The file is created with 0600 permissions so that only chatlabel's user can read it;
    one that others can read is tightened (and logged), since with it anyone could sign in
    as anyone.
    """
    if from_env:
        return from_env.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = -1
    if fd >= 0:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
        log.info("generated the web chat's session secret in %s", path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o): set to 0600", path, mode)
        path.chmod(0o600)
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise ConfigError(f"{path}: too short to be a session secret; delete it to make a new one")
    return secret.encode()


def new_person_id() -> str:
    """A fresh random person id (80 bits)."""
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


@dataclass(frozen=True)
class Session:
    """A verified session: the person and when the cookie was issued."""

    person: str
    issued: int


class Sessions:
    """Signs and checks session cookies and the per-session CSRF token."""

    def __init__(self, secret: bytes, lifetime: float) -> None:
        self._key = hashlib.sha256(b"chatlabel web sessions\0" + secret).digest()
        self.lifetime = lifetime

    def _mac(self, what: str) -> str:
        digest = hmac.new(self._key, what.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def cookie(self, person: str, now: float) -> str:
        """A cookie value for `person`, issued `now`."""
        body = f"{person}.{int(now):x}"
        return f"{body}.{self._mac('cookie:' + body)}"

    def check(self, value: str | None, now: float) -> Session | None:
        """The session in a cookie; None without one, or for a forged or expired one."""
        if not value or len(value) > 120:
            return None
        parts = value.split(".")
        if len(parts) != 3 or not PERSON_ID.match(parts[0]):
            return None
        person, stamp, mac = parts
        if not hmac.compare_digest(mac, self._mac(f"cookie:{person}.{stamp}")):
            return None
        try:
            issued = int(stamp, 16)
        except ValueError:
            return None
        # Issued in the future (a clock jumped back, or a forgery): not trusted either.
        if issued > now + 300 or now - issued > self.lifetime:
            return None
        return Session(person, issued)

    def csrf(self, person: str) -> str:
        """The token the page sends with every post (a cross-site form cannot know it)."""
        return self._mac("csrf:" + person)[:32]

    def csrf_ok(self, person: str, token: str | None) -> bool:
        """Whether `token` is this person's CSRF token."""
        return bool(token) and hmac.compare_digest(str(token), self.csrf(person))


def languages(header: str | None) -> list[str]:
    """Accept-Language tags, most wanted first ("es-ES,es;q=0.9,en;q=0.8" → es-ES, es, en)."""
    wanted: list[tuple[float, int, str]] = []
    for n, part in enumerate((header or "")[:MAX_LANGUAGE_HEADER].split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not re.fullmatch(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*", tag):
            continue
        q = 1.0
        m = re.search(r"q\s*=\s*([01](?:\.\d{0,3})?)", params)
        if m:
            q = float(m.group(1))
        if q > 0:
            wanted.append((-q, n, tag))
    return [tag for _, _, tag in sorted(wanted)[:MAX_LANGUAGES]]


class Origins:
    """Which Host headers the server answers and which Origin a post may come from.

    A Host outside the list is refused, so a page on a DNS name rebound to this machine gets
    nothing; a post is accepted only from the page's own origin (the Host it was served
    under, or the configured base URL's).
    """

    def __init__(self, host: str, base_url: str) -> None:
        self.hosts = {"localhost", "127.0.0.1", "::1"}
        self.any_ip = host in ("", "0.0.0.0", "::")  # listening everywhere: LAN addresses too
        if not self.any_ip:
            self.hosts.add(host.lower())
        self.base_origin = ""
        if base_url:
            parts = urlsplit(base_url)
            self.hosts.add((parts.hostname or "").lower())
            self.base_origin = f"{parts.scheme}://{parts.netloc}".lower()

    def host_ok(self, host_header: str | None) -> bool:
        """Whether the request was addressed to a name this server answers to."""
        name = _hostname(host_header or "")
        if name is None:
            return False
        if name in self.hosts:
            return True
        if self.any_ip:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False

    def origin_ok(self, origin: str | None, host_header: str | None, scheme: str) -> bool:
        """Whether a post's Origin is the page's own."""
        if not origin or origin == "null":
            return False
        origin = origin.lower()
        if self.base_origin and origin == self.base_origin:
            return True
        return origin in (f"{s}://{(host_header or '').lower()}" for s in (scheme, "https"))


def _hostname(host_header: str) -> str | None:
    """The name in a Host header, without its port ("[::1]:8080" → "::1")."""
    host = host_header.strip().lower()
    if not host or len(host) > 255:
        return None
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
