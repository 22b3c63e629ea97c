"""Suggestions in and results out: scored suggestions from JSONL and CSV, Label Studio's task
JSON imported and exported (a project round-trips), and the config's model section."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from chatlabel import exporter, label_studio
from chatlabel.config import ConfigError, parse_config
from chatlabel.importer import ImportError_, import_file
from chatlabel.models.http import BackendError, read_predictions
from chatlabel.service.labeling import LabelingService
from chatlabel.service.types import Task, UserRef
from tests.conftest import ServiceFactory, write_jsonl

LABELS = ["positive", "negative", "neutral"]

BACKENDS = ("sqlite", "postgresql")


def project(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "name": "p",
        "labels": LABELS,
        "overlap": 2,
        "max_overlap": 2,
        "quality": {"qualification": 0, "gold_rate": 0.0},
        "model": {"kind": "import", "auto_threshold": 0.9, "audit_rate": 0.0},
        "label_studio": {"from_name": "sentiment", "to_name": "review", "text_key": "review"},
    }
    p.update(over)
    return p


def choice(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "sentiment", "to_name": "review", "type": "choices",
             "value": {"choices": [label]}}]  # fmt: skip


# What Label Studio exports: data, predictions with a score and a version, annotations.
LS_PROJECT: list[dict[str, Any]] = [
    {
        "id": 101,
        "data": {"review": "Loved every minute.", "source": "web", "stars": 5},
        "predictions": [
            {"model_version": "bert-2", "score": 0.42, "result": choice("neutral")},
            {"model_version": "bert-3", "score": 0.96, "result": choice("positive")},
        ],
        "annotations": [],
    },
    {
        "id": 102,
        "data": {"review": "Never again."},
        "predictions": [{"model_version": "bert-3", "score": 0.61, "result": choice("negative")}],
        "annotations": [{"result": choice("neutral"), "ground_truth": False}],
    },
    {
        "id": 103,
        "data": {"review": "It was fine, I guess.", "context": "A hotel review"},
        "predictions": [],
        "annotations": [{"result": choice("neutral"), "ground_truth": True}],
    },
]


def write_tasks(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(tasks, indent=2), encoding="utf-8")
    return path


async def answer(svc: LabelingService, who: str, value: str) -> None:
    user = UserRef("t", who, who)
    await svc.join(user)
    task = await svc.next_task(user)
    assert isinstance(task, Task), task
    assert (await svc.answer(user, task.assignment_id, value)).ok


async def export_tasks(svc: LabelingService) -> list[dict[str, Any]]:
    out = io.StringIO()
    n = await exporter.write(svc, "p", "results", "label-studio", out)
    tasks = json.loads(out.getvalue())
    assert len(tasks) == n
    return list(tasks)


async def test_a_label_studio_project_round_trips(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = await service_factory([project()])
    summary = await import_file(svc, "p", write_tasks(tmp_path / "project.json", LS_PROJECT))
    assert (summary.items, summary.gold) == (3, 1)
    # The best-scored prediction is the suggestion, with its version; ground truth is gold.
    rows = await svc.db.read(
        lambda c: [tuple(r) for r in c.execute(
            "SELECT ext_id, text, context, gold, suggestion, suggestion_score, suggestion_model,"
            " route, meta FROM items ORDER BY seq")]
    )  # fmt: skip
    assert rows == [
        ("101", "Loved every minute.", None, None, "positive", 0.96, "bert-3", "check",
         '{"source": "web", "stars": 5}'),
        ("102", "Never again.", None, None, "negative", 0.61, "bert-3", None, None),
        ("103", "It was fine, I guess.", "A hotel review", "neutral", None, None, None, None,
         None),
    ]  # fmt: skip
    # People label: the confident one gets one check, the other full overlap.
    await answer(svc, "ann", "negative")  # ordinary work first: nobody is a checker yet
    await answer(svc, "bob", "negative")
    await answer(svc, "cid", "yes")
    first = await export_tasks(svc)
    assert [t["id"] for t in first] == [101, 102, 103]
    assert first[0]["data"] == {"source": "web", "stars": 5, "review": "Loved every minute."}
    assert first[0]["predictions"] == [
        {"model_version": "bert-3", "result": choice("positive"), "score": 0.96}
    ]
    assert first[0]["annotations"] == [
        {"result": choice("positive"), "ground_truth": False, "was_cancelled": False}
    ]
    assert first[0]["meta"]["method"] == "check" and first[0]["meta"]["chatlabel_id"] == "101"
    assert first[1]["annotations"][0]["result"] == choice("negative")
    assert first[1]["meta"]["n_answers"] == 2
    assert first[2]["data"] == {"review": "It was fine, I guess.", "context": "A hotel review"}
    assert first[2]["annotations"] == [
        {"result": choice("neutral"), "ground_truth": True, "was_cancelled": False}
    ]
    # Back in: a fresh project gets the same tasks, predictions and gold; out again, the same
    # file (less what only people's answers made: results of items not labeled there yet).
    again = await service_factory([project(name="q")])
    svc2 = again
    path = write_tasks(tmp_path / "exported.json", first)
    summary = await import_file(svc2, "q", path)
    assert (summary.items, summary.gold) == (3, 1)
    out = io.StringIO()
    await exporter.write(svc2, "q", "results", "label-studio", out)
    second = json.loads(out.getvalue())
    for a, b in zip(first, second, strict=True):
        assert (a["id"], a["data"], a["predictions"]) == (b["id"], b["data"], b["predictions"])
        assert a["meta"]["chatlabel_id"] == b["meta"]["chatlabel_id"]
    assert second[2]["annotations"] == first[2]["annotations"]  # gold survives
    assert [t["annotations"] for t in second[:2]] == [[], []]  # not labeled in q yet


async def test_scored_suggestions_from_jsonl_and_csv(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = await service_factory([project()])
    write_jsonl(tmp_path / "a.jsonl", [
        {"id": "a1", "text": "x", "suggestion": "positive", "suggestion_score": 0.93,
         "model_version": "rules-1"},
        {"id": "a2", "text": "y", "suggestion": "negative", "suggestion_score": "0.5"},
    ])  # fmt: skip
    assert (await import_file(svc, "p", tmp_path / "a.jsonl")).items == 2
    (tmp_path / "b.csv").write_text(
        "id,text,suggestion,suggestion_score\nb1,z,neutral,0.99\n", encoding="utf-8"
    )
    assert (await import_file(svc, "p", tmp_path / "b.csv")).items == 1
    rows = await svc.db.read(
        lambda c: [tuple(r) for r in c.execute(
            "SELECT ext_id, suggestion_score, suggestion_model, route, needed FROM items"
            " ORDER BY seq")]
    )  # fmt: skip
    assert rows == [
        ("a1", 0.93, "rules-1", "check", 1),
        ("a2", 0.5, None, None, 2),
        ("b1", 0.99, None, "check", 1),
    ]


@pytest.mark.parametrize(
    "row,problem",
    [
        (
            {"suggestion": "positive", "suggestion_score": 1.5},
            "suggestion_score must be between 0 and 1",
        ),
        (
            {"suggestion": "positive", "suggestion_score": "high"},
            "suggestion_score must be a number",
        ),
        ({"suggestion_score": 0.9}, "suggestion_score needs a suggestion"),
        ({"suggestion": "happy", "suggestion_score": 0.9}, "suggestion: unknown label 'happy'"),
    ],
)
async def test_a_bad_suggestion_names_file_and_line_and_imports_nothing(
    service_factory: ServiceFactory, tmp_path: Path, row: dict[str, Any], problem: str
) -> None:
    svc = await service_factory([project()])
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "ok", "text": "x"}, {"text": "y", **row}])
    with pytest.raises(ImportError_, match=rf"bad.jsonl:2: {problem}"):
        await import_file(svc, "p", path)
    assert await svc.db.read(lambda c: c.execute("SELECT COUNT(*) FROM items").fetchone()[0]) == 0


async def test_a_broken_task_file_names_the_line_it_starts_on(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = await service_factory([project()])
    path = tmp_path / "tasks.json"
    path.write_text('[\n  {"data": {"review": "ok"}},\n  {"data": 5}\n]\n', encoding="utf-8")
    with pytest.raises(ImportError_, match=r"tasks.json:3: a task needs a 'data' object"):
        await import_file(svc, "p", path)
    path.write_text('[\n  {"data": {"review": "ok"}},\n  {"data": {"review": \n', encoding="utf-8")
    with pytest.raises(ImportError_, match=r"tasks.json:3: malformed JSON"):
        await import_file(svc, "p", path)


def test_tasks_stream_in_small_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of 7 characters: every task straddles reads, lines still count right.
    monkeypatch.setattr(label_studio, "CHUNK", 7)
    tasks = [{"data": {"review": f"r{n}\nwith a newline"}} for n in range(5)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    got = list(label_studio.read_tasks(path))
    assert [t for _, t in got] == tasks
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [lines[n - 1].strip() for n, _ in got] == ["{"] * 5


def test_backend_responses_in_either_shape() -> None:
    labels = ("positive", "negative")
    one = {"result": choice("negative"), "score": 0.8, "model_version": "m1"}
    preds, version = read_predictions({"results": [one, []]}, [7, 8], labels)
    assert [(p.item_id, p.label, p.score) for p in preds] == [(7, "negative", 0.8)]
    assert version == "m1"
    # A bare list (older backends), a score on the region, and an unknown label left out.
    region = [{**choice("positive")[0], "score": 0.7}]
    preds, _ = read_predictions([{"result": region}, {"result": choice("meh")}], [1, 2], labels)
    assert [(p.item_id, p.label, p.score) for p in preds] == [(1, "positive", 0.7)]
    with pytest.raises(BackendError):
        read_predictions({"detail": "oops"}, [1], labels)


def test_builtin_text_without_scikit_learn_is_a_config_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if the extra were not installed
    data = {"project": [project(model={"kind": "builtin-text"})]}
    need = r"project\[0\]: model\.kind: 'builtin-text' needs scikit-learn.*'chatlabel\[model\]'"
    with pytest.raises(ConfigError, match=need):
        parse_config(data, tmp_path / "c.toml")
    monkeypatch.delitem(sys.modules, "sklearn")
    assert parse_config(data, tmp_path / "c.toml").project[0].model is not None


def test_the_model_section_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model: suggestions route single-choice items only"):
        parse_config({"project": [project(kind="multi")]}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match=r"model\.url: kind 'http' needs"):
        parse_config({"project": [project(model={"kind": "http"})]}, tmp_path / "c.toml")


async def test_coordinators_on_every_platform_are_told_when_routing_switches_off(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    """The alert is an outbox row per coordinator, queued with the switch: a process serving
    Slack hears of it even when the model runs in the Telegram bot's process."""
    boss = ["telegram:1", "slack:T1/U9"]
    svc = await service_factory([project()], access={"coordinators": boss})
    wrong = [
        {"id": f"g{n}", "text": f"review {n}", "gold": "positive",
         "suggestion": "negative", "suggestion_score": 0.95}
        for n in range(8)
    ]  # fmt: skip
    await import_file(svc, "p", write_jsonl(tmp_path / "gold.jsonl", wrong))
    stopped = await svc.check_model("p")
    assert stopped is not None and stopped.reason.params["n"] == 8
    assert await svc.check_model("p") is None  # once
    for platform in ("telegram", "slack"):
        (row,) = await svc.outbox_due(platform, 10)
        to = boss[platform == "slack"]
        assert (row.kind, row.user.key, row.project) == ("model_off", to, "p")
        assert row.payload == {"accuracy": 0.0, "n": 8, "min": 0.7}
