"""Access policy: roles from the config's lists, and who may join a project."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Literal

Role = Literal["annotator", "expert", "coordinator"]
Refusal = Literal["invite_only", "allowlist_only"]


def listed(key: str, entries: Sequence[str]) -> bool:
    """True when `platform:user` is in entries; Slack keys `slack:T/U` also match `slack:U`."""
    if key in entries:
        return True
    platform, _, user = key.partition(":")
    if "/" in user:
        return f"{platform}:{user.rsplit('/', 1)[1]}" in entries
    return False


def role_of(key: str, coordinators: Sequence[str], experts: Sequence[str]) -> Role:
    """The role an annotator key has under the config."""
    if listed(key, coordinators):
        return "coordinator"
    if listed(key, experts):
        return "expert"
    return "annotator"


def join_refusal(
    key: str,
    mode: str,
    *,
    code: str | None,
    invite_codes: Sequence[str],
    allowlist: Sequence[str],
    role: Role,
    already_member: bool,
) -> Refusal | None:
    """Why this person may not join (None when they may)."""
    if role != "annotator" or already_member or mode == "open":
        return None
    if mode == "invite":
        if code and code_matches(code, invite_codes):
            return None
        return "invite_only"
    if listed(key, allowlist):
        return None
    return "allowlist_only"


def code_matches(code: str, codes: Sequence[str]) -> bool:
    """True when `code` is one of `codes`, compared in constant time against every one."""
    given = code.encode("utf-8", "surrogatepass")
    found = False
    for candidate in codes:
        # No early exit, and compare_digest on bytes: the time taken says nothing about
        # which code, or how much of one, a guess got right.
        found |= hmac.compare_digest(given, candidate.encode("utf-8", "surrogatepass"))
    return found
