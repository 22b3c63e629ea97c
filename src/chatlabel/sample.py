"""The bundled sample project: short reviews to label by sentiment, some gold, a few pictures."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

LABELS = ("positive", "negative", "neutral")
_SUBJECTS = [
    "The battery",
    "Delivery",
    "The screen",
    "Customer support",
    "The price",
    "The camera",
    "Setup",
    "The manual",
    "The strap",
    "Sound quality",
    "The app",
    "Packaging",
    "The charger",
    "The keyboard",
    "Shipping",
]
_PHRASES = {
    "positive": [
        "is excellent, I love it",
        "was faster than promised",
        "works perfectly",
        "exceeded my expectations",
        "is great value",
        "made me smile",
    ],
    "negative": [
        "broke after two days",
        "is a total waste of money",
        "was rude and unhelpful",
        "stopped working",
        "arrived damaged",
        "is awful, avoid it",
    ],
    "neutral": [
        "is as described",
        "arrived on Tuesday",
        "is blue",
        "is about average",
        "came in a box",
        "does what it says",
    ],
}

CONFIG = """\
# chatlabel sample deployment: edit freely. Every setting is listed in config/example.toml.
[storage]
database = "chatlabel.db"

[[project]]
name = "sentiment"
title = "Review sentiment"
instructions = "Read each short review (or look at the face) and pick its sentiment."
kind = "single"
labels = ["positive", "negative", "neutral"]
overlap = 3
max_overlap = 5
agreement = 0.6
lease_seconds = 300
undo_seconds = 30

[project.quality]
qualification = 4
gold_rate = 0.15
min_gold_accuracy = 0.7
gold_feedback = true

[access]
mode = "open"
coordinators = ["telegram:1000"]

[telegram]
token_env = "CHATLABEL_TELEGRAM_TOKEN"
"""


def _face(path: Path, mood: str, seed: int) -> None:
    """Draw a simple face whose mouth shows the mood."""
    rng = random.Random(seed)
    img = Image.new("RGB", (480, 360), tuple(rng.randint(180, 250) for _ in range(3)))
    d = ImageDraw.Draw(img)
    d.ellipse((140, 60, 340, 300), fill=(255, 214, 102), outline=(90, 60, 0), width=6)
    d.ellipse((190, 130, 215, 160), fill=(40, 40, 40))
    d.ellipse((265, 130, 290, 160), fill=(40, 40, 40))
    if mood == "positive":
        d.arc((185, 170, 295, 260), 20, 160, fill=(90, 30, 0), width=8)
    elif mood == "negative":
        d.arc((185, 215, 295, 300), 200, 340, fill=(90, 30, 0), width=8)
    else:
        d.line((195, 240, 285, 240), fill=(90, 30, 0), width=8)
    img.save(path, "JPEG", quality=85)


def write_sample(directory: Path, n_items: int = 40, *, seed: int = 7, images: int = 4) -> Path:
    """Write a sample config, items.jsonl and truth.json into `directory`; returns the config."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    (directory / "images").mkdir(exist_ok=True)
    truth: dict[str, str] = {}
    rows = []
    n_gold = max(4, n_items // 6)
    for i in range(n_items):
        label = LABELS[i % 3] if i < 6 else rng.choice(LABELS)
        item_id = f"r{i + 1:04d}"
        row: dict[str, object] = {"id": item_id}
        if i < images:
            name = f"images/face{i + 1}.jpg"
            _face(directory / name, label, seed + i)
            row.update(text=f"Picture {i + 1}: how does this face feel?", image=name)
        else:
            subject = _SUBJECTS[i % len(_SUBJECTS)]
            row["text"] = f"#{i + 1} {subject} {rng.choice(_PHRASES[label])}."
        if images <= i < images + n_gold:
            row["gold"] = label
            row["gold_reason"] = f"The review is clearly {label}."
        truth[item_id] = label
        rows.append(row)
    with (directory / "items.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (directory / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    config = directory / "chatlabel.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return config
