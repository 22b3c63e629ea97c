"""chatlabel: label data in chat, with gold scoring, overlap and verdicts in one SQLite file."""

__version__ = "0.1.0"
