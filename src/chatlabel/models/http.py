"""The `http` model: any model behind Label Studio's ML backend API (POST /predict)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from ..label_studio import answer_of, label_config
from .base import Prediction, Predictions, Suggested, WorkSource

if TYPE_CHECKING:
    from ..config import LabelStudio

log = logging.getLogger("chatlabel.model")


class BackendError(Exception):
    """The backend answered with something that is not a prediction list."""


def choice_of(result: Any, labels: Sequence[str]) -> str | None:
    """The label a Label Studio result list chose (its first `choices` region), if valid."""
    label = answer_of(result, "single")
    return label if isinstance(label, str) and label in labels else None


def _score(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return min(max(float(raw), 0.0), 1.0)


def read_predictions(
    body: Any, ids: Sequence[int], labels: Sequence[str]
) -> tuple[list[Prediction], str | None]:
    """Predictions from a /predict response (one entry per task, in order) and their version.

    Each entry is a prediction ({result, score, model_version}) or a list of them (the one with
    the highest score counts). Entries without a valid choice are left out.
    """
    results = body.get("results") if isinstance(body, dict) else body
    if not isinstance(results, list):
        raise BackendError("the response has no 'results' list")
    out: list[Prediction] = []
    version: str | None = body.get("model_version") if isinstance(body, dict) else None
    for item_id, entry in zip(ids, results, strict=False):
        candidates = entry if isinstance(entry, list) else [entry]
        best: tuple[float, Prediction] | None = None
        for p in candidates:
            if not isinstance(p, dict):
                continue
            label = choice_of(p.get("result"), labels)
            if label is None:
                continue
            score = _score(p.get("score"))
            if score is None:  # some backends score the region instead of the prediction
                first = (p.get("result") or [None])[0]
                score = _score(first.get("score")) if isinstance(first, dict) else None
            rank = -1.0 if score is None else score
            if best is None or rank > best[0]:
                best = (rank, Prediction(item_id, label, score))
                version = str(p.get("model_version") or version or "") or None
        if best is not None:
            out.append(best[1])
    return out, version


class HttpModel:
    """Suggestions from a Label Studio ML backend; it learns on its own side, if at all."""

    kind = "http"
    learns = False

    def __init__(
        self,
        url: str,
        *,
        labels: Sequence[str],
        names: LabelStudio,
        timeout: float = 30.0,
        batch: int = 100,
        auth: str | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/predict"
        self.labels = tuple(labels)
        self.names = names
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.batch = batch
        # HTTP basic auth (the ML backend's BASIC_AUTH_USER/PASS), as a header of every request.
        token = base64.b64encode(auth.encode()).decode() if auth else ""
        self.headers = {"Authorization": f"Basic {token}"} if auth else {}
        self.config = label_config(self.labels, names)
        self._session: aiohttp.ClientSession | None = None

    async def _predict(
        self, ids: list[int], texts: list[str]
    ) -> tuple[list[Prediction], str | None]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        key = self.names.text_key
        body = {
            "tasks": [{"id": i, "data": {key: t}} for i, t in zip(ids, texts, strict=True)],
            "label_config": self.config,
            "project": "chatlabel",
            "params": {"context": {}},
        }
        async with self._session.post(self.url, json=body) as resp:
            if resp.status != 200:
                raise BackendError(f"{self.url} answered {resp.status}")
            got = await resp.json(content_type=None)
        return read_predictions(got, ids, self.labels)

    async def suggest(self, source: WorkSource) -> Suggested | None:
        """POST new items (and gold items, to score the backend) in batches; read the labels."""
        # Only items without a suggestion from it come here: few per round, read in a thread.
        work = await asyncio.to_thread(source)
        done: dict[str, list[Prediction]] = {"items": [], "gold": []}
        version: str | None = None
        for key, ids, texts in (
            ("items", work.item_ids, work.item_texts),
            ("gold", work.gold_ids, work.gold_texts),
        ):
            for start in range(0, len(ids), self.batch):
                end = start + self.batch
                got, v = await self._predict(ids[start:end], texts[start:end])
                done[key] += got
                version = v or version
        if not done["items"] and not done["gold"]:
            return None
        return Suggested(
            version or self.kind, Predictions.of(done["items"]), Predictions.of(done["gold"])
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
