"""The read side: an annotator's own stats and the coordinators' tables."""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections import Counter

from ..core import agreement as agr
from ..core.gold import accuracy
from ..core.suspension import Reason
from ..core.timing import eta_seconds
from ..storage import feedback_queries, quality_queries, report_queries
from .labeling import LabelingService
from .quality import recompute
from .types import AnnotatorRow, Disagreement, ModelState, Progress, UserRef
from .volunteer_types import ReportedItem

HOUR = 3600.0


class Reports:
    """Figures for annotators and coordinators, computed from the database."""

    def __init__(self, service: LabelingService) -> None:
        self.service = service
        self.db = service.db

    async def progress(self, name: str) -> Progress:
        """Counts, rate, ETA and label distribution of a project."""
        svc = self.service
        now = svc.clock()
        c = await self.db.read(
            report_queries.project_counts, svc.pids[name], now - HOUR, now - 24 * HOUR
        )
        labels: Counter[str] = Counter()
        for label, n in c.resolved_labels:
            for lab in json.loads(label) if svc.rules[name].kind == "multi" else [label]:
                labels[lab] += n
        timeline, total = [], 0
        for t, n in c.per_minute:
            total += n
            timeline.append((t, total))
        pending = c.by_status.get("pending", 0)
        # Answers still needed at the last hour's pace.
        eta = eta_seconds(c.answers_needed, c.answers_since, pending)
        return Progress(
            project=name,
            title=svc.projects[name].title,
            items=sum(c.by_status.values()),
            gold_items=c.gold_items,
            resolved=c.by_status.get("resolved", 0),
            escalated=c.by_status.get("escalated", 0),
            pending=pending,
            answers=c.answers,
            answers_last_hour=c.answers_since,
            annotators_active=c.active_since,
            annotators_total=c.members,
            suspended=c.suspended,
            eta_seconds=eta,
            labels=dict(labels.most_common()),
            timeline=timeline,
            paused=c.paused,
        )

    async def annotators(self, name: str, limit: int = 200) -> list[AnnotatorRow]:
        """One row per member: answers, gold accuracy with its interval, speed, status."""
        svc = self.service
        pid = svc.pids[name]

        def q(conn: sqlite3.Connection) -> list[tuple[sqlite3.Row, list[float]]]:
            rows = report_queries.members(conn, pid, limit)
            return [(r, report_queries.recent_seconds(conn, pid, r["id"])) for r in rows]

        out = []
        model = await svc.model_state(name)
        if model is not None:
            out.append(model_row(model))
        for r, secs in await self.db.read(q):
            acc = accuracy(r["gold_correct"], r["gold_answers"])
            low, high = acc.shown_interval
            out.append(
                AnnotatorRow(
                    key=r["key"],
                    name=r["name"],
                    role=svc.role(UserRef.from_key(r["key"])),
                    status=r["status"],
                    answers=r["answers"],
                    skips=r["skips"],
                    gold_answers=r["gold_answers"],
                    gold_accuracy=acc.raw,
                    accuracy_low=low,
                    accuracy_high=high,
                    median_seconds=statistics.median(secs) if secs else None,
                    reason=Reason.decode(r["reason"]),
                )
            )
        return out

    async def settled_times(self, name: str) -> list[float]:
        """When each settled ordinary item got its last answer, oldest first."""
        return await self.db.read(quality_queries.settled_times, self.service.pids[name])

    async def disagreements(self, name: str, limit: int = 20) -> list[Disagreement]:
        """Escalated items first, then the least confident items with several answers."""
        rows = await self.db.read(report_queries.disagreements, self.service.pids[name], limit)
        return [Disagreement(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    async def reported(self, name: str, limit: int = 50) -> list[ReportedItem]:
        """Items people reported, the latest first, with their reasons and decisions."""
        rows = await self.db.read(feedback_queries.reported_items, self.service.pids[name], limit)
        return [
            ReportedItem(
                item_id=r["ext_id"],
                text=r["text"],
                status=r["status"],
                reports=int(r["reports"]),
                reasons=tuple(sorted(str(r["reasons"] or "").split(","))),
                decision=r["decision"],
            )
            for r in rows
        ]

    async def agreement(self, name: str) -> dict[str, float | int]:
        """Fleiss' kappa and Krippendorff's alpha over the project's counted answers."""
        rules = self.service.rules[name]
        if rules.method == "dawid-skene":
            await recompute(self.service, name)  # batch verdicts: fresh when asked
        rows = await self.db.read(report_queries.counted_answers, self.service.pids[name])
        return agr.agreement_figures(rows, rules.kind)


def model_row(m: ModelState) -> AnnotatorRow:
    """A project's model as a line of the annotator table: scored on gold and audits."""
    acc = accuracy(m.right, m.scored)
    low, high = acc.shown_interval
    return AnnotatorRow(
        key=f"model:{m.kind}",
        name=m.version or m.kind,
        role="model",
        # Routing switched off is the model's suspension: coordinators see why, as for people.
        status="active" if m.routing else "suspended",
        answers=m.suggested,
        skips=0,
        gold_answers=m.scored,
        gold_accuracy=acc.raw,
        accuracy_low=low,
        accuracy_high=high,
        median_seconds=None,
        reason=m.reason,
    )
