"""One log filter that keeps secrets (tokens, tickets, response URLs) out of every log line."""

from __future__ import annotations

import logging
import re

# Slack tokens, Socket Mode tickets and JSON fields that carry a secret, whoever logs them.
_PATTERNS = (
    (re.compile(r"\b(xox[abpre]|xapp)-[\w-]+"), r"\1-(redacted)"),
    (re.compile(r"(ticket=)[^&\s'\"]+"), r"\1(redacted)"),
    (re.compile(r"""(["'](?:token|response_url)["']\s*:\s*["'])[^"']*"""), r"\1(redacted)"),
    # A response_url as slack_sdk's webhook client logs it (Slack's are on hooks.slack.com).
    (re.compile(r"(Sending a request - url: )https?://[^\s,]+"), r"\1(redacted)"),
    (re.compile(r"(A retry handler found: \w+ for \w+ )https?://\S+"), r"\1(redacted)"),
    (re.compile(r"https://hooks\.slack\.com/\S+"), "(redacted)"),
)


class Redactor(logging.Filter):
    """Rewrites records so that known secrets and secret-looking values never reach a handler.

    Known secrets (a bot token, which python-telegram-bot logs inside its base URL) become
    "<token>"; Slack tokens, Socket Mode tickets and response URLs are masked by pattern.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def clean(self, text: str) -> str:
        """The text with every known and secret-looking value replaced."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "<token>")
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        message = record.getMessage()
        cleaned = self.clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Handlers reuse exc_text: format it here, cleaned (errors quote URLs and tokens).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        return True


REDACTOR = Redactor()
# Libraries that may log request URLs or payloads, and our own loggers.
_LOGGED_BY = ("telegram", "httpx", "httpcore", "slack_sdk", "slack_bolt", "aiohttp", "chatlabel")


def redacted_logger(name: str) -> logging.Logger:
    """A logger whose records pass through the one Redactor (added once, however often asked)."""
    logger = logging.getLogger(name)
    if REDACTOR not in logger.filters:
        logger.addFilter(REDACTOR)
    return logger


def hide(secret: str) -> None:
    """Never log `secret`: attach the Redactor to every logger that could see it."""
    REDACTOR.secrets.add(secret)
    # httpx logs every request URL, which holds a Telegram bot token, at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # A filter on a logger does not cover its children, so each existing logger gets it.
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _LOGGED_BY]
    for name in {*names, *_LOGGED_BY}:
        redacted_logger(name)
    # And every handler already in place, which sees records from loggers made later too.
    for handler in logging.getLogger().handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)
