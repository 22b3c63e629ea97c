"""Label Studio's task JSON: tasks (data, predictions, annotations) in, results out.

A task's `data` holds the item: its text under the project's `text_key` ("text", as in
`$text`), media under `image`, `audio` or `video`, `context`, and any other field (kept in the
item's meta and written back to `data`). The prediction with the highest score becomes the
item's suggestion (its `score` and `model_version` too); an annotation marked `ground_truth`
becomes its gold answer. chatlabel's own id travels in the task's `meta` as `chatlabel_id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

MEDIA = ("image", "audio", "video")
MAX_TASK = 1 << 20  # a task over 1 MiB is an error, not a memory spike (as a JSONL line)
CHUNK = 1 << 16


class TaskError(ValueError):
    """A task that cannot be read; `line` is where it starts in the file."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def is_task_list(path: Path) -> bool:
    """True when a .json file holds a JSON array (Label Studio's export) rather than JSONL."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def read_tasks(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, task) of each element of a JSON array, streamed: memory stays at one task."""
    decoder = json.JSONDecoder()
    with path.open("r", encoding="utf-8", newline="") as f:
        buf, pos, line, eof = "", 0, 1, False

        def more() -> bool:
            nonlocal buf, pos, eof
            block = f.read(CHUNK)
            if not block:
                eof = True
                return False
            buf, pos = buf[pos:] + block, 0
            return True

        def skip() -> str:
            """Skip whitespace; the next character ('' at the end)."""
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf) or not more():
                    return buf[pos] if pos < len(buf) else ""

        if skip() != "[":
            raise TaskError(line, "expected a JSON array of tasks")
        pos += 1
        first = True
        while True:
            c = skip()
            if c == "]":
                return
            if c == "":
                raise TaskError(line, "the array of tasks is not closed")
            if not first:
                if c != ",":
                    raise TaskError(line, "expected ',' between tasks")
                pos += 1
                c = skip()
            first = False
            while True:
                try:
                    task, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if len(buf) - pos > MAX_TASK:
                        raise TaskError(line, "task is larger than 1 MiB") from None
                    if eof or not more():
                        raise TaskError(line, f"malformed JSON: {exc.msg}") from None
            yield line, task
            line += buf.count("\n", pos, end)
            pos = end


def _value(region: dict[str, Any]) -> list[str] | None:
    """The values one result region holds: choices, a rating, or text."""
    value = region.get("value")
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("choices"), list):
        return [str(v) for v in value["choices"]]
    if isinstance(value.get("rating"), int | float):
        return [str(value["rating"]).removesuffix(".0")]
    if isinstance(value.get("text"), list) and value["text"]:
        return [str(value["text"][0])]
    return None


def answer_of(result: Any, kind: str) -> str | list[str] | None:
    """An item value from a result list: a label, a list of labels (multi), a rating, text."""
    if not isinstance(result, list):
        return None
    for region in result:
        values = _value(region) if isinstance(region, dict) else None
        if values:
            return values if kind == "multi" else values[0]
    return None


def task_row(task: Any, text_key: str, kind: str, line: int) -> dict[str, Any]:
    """A Label Studio task as an import row (the JSONL fields)."""
    if not isinstance(task, dict):
        raise TaskError(line, "expected a task object")
    data = task.get("data")
    if not isinstance(data, dict):
        raise TaskError(line, "a task needs a 'data' object")
    row: dict[str, Any] = {}
    meta = task.get("meta")
    ext = meta.get("chatlabel_id") if isinstance(meta, dict) else None
    ext = ext if ext is not None else task.get("id")
    if ext is not None:
        row["id"] = str(ext)
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key == text_key:
            row["text"] = value
        elif key in MEDIA or key == "context":
            row[key] = value
        else:
            extra[key] = value
    if extra:
        row["meta"] = extra
    best: tuple[float, dict[str, Any], str | list[str]] | None = None
    for p in task.get("predictions") or []:
        if not isinstance(p, dict):
            continue
        label = answer_of(p.get("result"), kind)
        if label is None:
            continue
        score = p.get("score")
        rank = float(score) if isinstance(score, int | float) else -1.0
        if best is None or rank > best[0]:
            best = (rank, p, label)
    if best is not None:
        _, p, label = best
        row["suggestion"] = json.dumps(label) if isinstance(label, list) else label
        if isinstance(p.get("score"), int | float) and not isinstance(p.get("score"), bool):
            row["suggestion_score"] = p["score"]
        if p.get("model_version"):
            row["model_version"] = str(p["model_version"])
    for a in task.get("annotations") or task.get("completions") or []:
        if isinstance(a, dict) and a.get("ground_truth") and not a.get("was_cancelled"):
            gold = answer_of(a.get("result"), kind)
            if gold is not None:
                row["gold"] = gold
    return row


def result(value: str, kind: str, from_name: str, to_name: str) -> list[dict[str, Any]]:
    """A Label Studio result list holding one item value."""
    if kind == "multi":
        body: dict[str, Any] = {"choices": json.loads(value)}
        typ = "choices"
    elif kind == "rating":
        body, typ = {"rating": float(value) if "." in value else int(value)}, "rating"
    elif kind == "text":
        body, typ = {"text": [value]}, "textarea"
    else:
        body, typ = {"choices": [value]}, "choices"
    return [{"from_name": from_name, "to_name": to_name, "type": typ, "value": body}]


def task_of(r: Sequence[Any], kind: str, labels: Sequence[str], names: Any) -> dict[str, Any]:
    """One exported row (storage.exports.tasks_sql's columns) as a Label Studio task."""
    (ext_id, text, media_kind, media_path, context, meta, gold, suggestion, score, model) = r[:10]
    status, label, confidence, n_answers, method = r[10:15]
    data: dict[str, Any] = json.loads(meta) if meta else {}
    if text is not None:
        data[names.text_key] = text
    if media_kind:
        data[media_kind] = media_path
    if context is not None:
        data["context"] = context
    task: dict[str, Any] = {}
    if str(ext_id).isdigit():
        task["id"] = int(ext_id)
    task["data"] = data
    info: dict[str, Any] = {"chatlabel_id": ext_id}
    if gold is None and status is not None:
        info.update(status=status, confidence=confidence, n_answers=n_answers, method=method)
    task["meta"] = info
    # Only a suggestion that is a value of the project can be one of its predictions (a verify
    # project's suggestion is what people say yes or no to, not a value).
    if suggestion is not None and (kind != "verify") and (kind != "single" or suggestion in labels):
        prediction: dict[str, Any] = {
            "model_version": model or "import",
            "result": result(suggestion, kind, names.from_name, names.to_name),
        }
        if score is not None:
            prediction["score"] = score
        task["predictions"] = [prediction]
    else:
        task["predictions"] = []
    done = gold if gold is not None else (label if status == "resolved" else None)
    task["annotations"] = (
        [
            {
                "result": result(done, kind, names.from_name, names.to_name),
                "ground_truth": gold is not None,
                "was_cancelled": False,
            }
        ]
        if done is not None
        else []
    )
    return task


def label_config(labels: Sequence[str], names: Any) -> str:
    """The Label Studio labeling config of a single-choice text project with these names."""
    choices = "".join(f"<Choice value={quoteattr(label)}/>" for label in labels)
    return (
        f"<View><Text name={quoteattr(names.to_name)} value={quoteattr('$' + names.text_key)}/>"
        f"<Choices name={quoteattr(names.from_name)} toName={quoteattr(names.to_name)} "
        f'choice="single">{choices}</Choices></View>'
    )
