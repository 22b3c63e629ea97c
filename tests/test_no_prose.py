"""Every sentence people read in chat lives in the catalog: none in the adapters or the service.

A sentence written in code is a sentence no translator sees: a Spanish volunteer would read it
in English. This scans the modules between the platforms and storage, and the charts and the
HTML report, for quoted prose; log lines, errors for operators, docstrings and config help are
not chat and may stay in code.
"""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "chatlabel"
SCANNED = ["service", "transports", "conversation", "core"]
# Modules outside those folders whose words people read: the charts and the HTML report.
SCANNED_FILES = ["charts.py", "report.py"]
# Three words in a row: prose, not an identifier, a code or a format.
PROSE = re.compile(r"[A-Za-z']{2,} [A-Za-z']{2,} [A-Za-z']{2,}")
# Module constants that hold platforms' error texts to match, or words for operators' errors.
NOT_CHAT = {
    "_GONE",
    "_BENIGN",
    "_OTHER_EDIT",
    "_FILE_REFUSED",
    "_TOKEN_KINDS",
    "_TOKEN_IN_USE",
    "_TOO_BIG",
}


def _quiet_nodes(tree: ast.AST) -> set[int]:
    """Ids of string nodes that are not chat: docstrings, log calls, raised errors, SQL."""
    quiet: set[int] = set()

    def mark(node: ast.AST) -> None:
        for sub in ast.walk(node):
            quiet.add(id(sub))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            mark(first)  # a docstring
        if isinstance(node, ast.Raise) and node.exc is not None:
            mark(node.exc)  # errors for operators and developers
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else ""
            if name in ("log", "logger", "logging", "warnings"):
                mark(node)
            if node.func.attr in ("execute", "executemany", "executescript"):
                mark(node)  # SQL
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in NOT_CHAT for t in node.targets
        ):
            mark(node)
    return quiet


def prose_in(path: Path) -> list[str]:
    """Quoted sentences in a module that would reach people in chat."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    quiet = _quiet_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in quiet or not isinstance(node, ast.Constant):
            continue
        if isinstance(node.value, str) and PROSE.search(node.value):
            found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    return found


def test_the_scan_finds_a_sentence(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(t):\n    '''Doc string here.'''\n    log.info('not for people in chat')\n"
        "    return 'Thanks for your answer!'\n"
    )
    found = prose_in(sample)
    assert len(found) == 1 and "Thanks for your answer" in found[0]


def test_no_sentence_outside_the_catalog() -> None:
    found = [hit for folder in SCANNED for f in sorted((SRC / folder).rglob("*.py"))
             for hit in prose_in(f)]  # fmt: skip
    found += [hit for name in SCANNED_FILES for hit in prose_in(SRC / name)]
    assert found == [], "\n".join(found)


# -- the web chat's page: its words come from the catalog too ------------------------------------

WEB = SRC / "web"
SHOWN_ATTRIBUTES = ("aria-label", "title", "placeholder", "alt", "value")


def prose_in_script(source: str) -> list[str]:
    """String literals of the page's script that read as sentences (comments are not shown)."""
    code = re.sub(r"(?m)^\s*//.*$|\s//\s.*$", "", source)
    literals = re.findall(
        r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'|`((?:[^`\\]|\\.)*)`', code
    )
    return [lit for groups in literals for lit in groups if lit and PROSE.search(lit)]


class _Words(HTMLParser):
    """Words a page shows on its own: text and shown attributes outside ${placeholders}."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def _check(self, text: str) -> None:
        bare = re.sub(r"\$\{[a-z_]+\}", "", text)
        if re.search(r"[^\W\d_]", bare):
            self.found.append(text.strip())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in SHOWN_ATTRIBUTES and value:
                self._check(value)

    def handle_data(self, data: str) -> None:
        if self.lasttag not in ("script", "style"):
            self._check(data)


def words_in_page(source: str) -> list[str]:
    """Words in the page's HTML that no translator would see."""
    parser = _Words()
    parser.feed(source)
    return parser.found


def test_the_scans_of_the_page_find_words() -> None:
    assert prose_in_script('const a = "Press the button now";\n// a comment is fine\n') == [
        "Press the button now"
    ]
    assert words_in_page('<p title="${x}">${y}</p><button aria-label="Send">➤</button>') == ["Send"]


def test_the_web_page_has_no_words_of_its_own() -> None:
    assert prose_in_script((WEB / "app.js").read_text(encoding="utf-8")) == []
    assert words_in_page((WEB / "index.html").read_text(encoding="utf-8")) == []
