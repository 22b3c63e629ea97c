"""chatlabel: label data in chat (Telegram and Slack), with gold scoring, overlap and verdicts in SQLite."""

__version__ = "0.1.0"
