"""The read side: an annotator's own stats and the coordinators' tables."""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections import Counter

import numpy as np

from ..core import agreement as agr
from ..core.gold import accuracy
from ..core.suspension import Reason
from ..storage import quality_queries, repo
from .labeling import LabelingService
from .quality import recompute
from .types import AnnotatorRow, Disagreement, MyStats, Progress, UserRef

HOUR = 3600.0


class Reports:
    """Figures for annotators and coordinators, computed from the database."""

    def __init__(self, service: LabelingService) -> None:
        self.service = service
        self.db = service.db

    async def my_stats(self, user: UserRef) -> MyStats | None:
        """The user's own figures in their current project (None before /start)."""
        svc = self.service

        def q(conn: sqlite3.Connection) -> MyStats | None:
            cur = svc.shared.current(conn, user)
            if cur is None:
                return None
            a, name = cur
            pid = svc.pids[name]
            m = repo.get_member(conn, pid, a["id"])
            if m is None:
                return None
            rank, of = conn.execute(
                """SELECT 1 + SUM(answers > :n), COUNT(*) FROM members WHERE project_id = :p""",
                {"n": m["answers"], "p": pid},
            ).fetchone()
            acc = accuracy(m["gold_correct"], m["gold_answers"])
            has = m["gold_answers"] > 0
            return MyStats(
                project=name,
                answers=m["answers"],
                skips=m["skips"],
                gold_answers=m["gold_answers"],
                gold_accuracy=acc.raw,
                accuracy_low=acc.low if has else None,
                accuracy_high=acc.high if has else None,
                rank=int(rank),
                of=int(of),
                status=m["status"],
                reason=Reason.decode(m["reason"]),
            )

        return await self.db.read(q)

    async def progress(self, name: str) -> Progress:
        """Counts, rate, ETA and label distribution of a project."""
        svc = self.service
        pid = svc.pids[name]
        now = svc.clock()

        def q(conn: sqlite3.Connection) -> Progress:
            counts = dict(
                conn.execute(
                    """SELECT status, COUNT(*) FROM items WHERE project_id = ? AND gold IS NULL
                   GROUP BY status""",
                    (pid,),
                ).fetchall()
            )
            gold_items = conn.execute(
                "SELECT COUNT(*) FROM items WHERE project_id = ? AND gold IS NOT NULL", (pid,)
            ).fetchone()[0]
            answers, last_hour = conn.execute(
                """SELECT COUNT(*), COALESCE(SUM(x.answered_at >= ?), 0) FROM answers x
                   JOIN items i ON i.id = x.item_id
                   WHERE i.project_id = ? AND x.value IS NOT NULL""",
                (now - HOUR, pid),
            ).fetchone()
            members = conn.execute(
                """SELECT COUNT(*), COALESCE(SUM(status = 'suspended'), 0) FROM members
                   WHERE project_id = ?""",
                (pid,),
            ).fetchone()
            active = conn.execute(
                """SELECT COUNT(DISTINCT x.annotator_id) FROM answers x
                   JOIN items i ON i.id = x.item_id
                   WHERE i.project_id = ? AND x.answered_at >= ?""",
                (pid, now - 24 * HOUR),
            ).fetchone()[0]
            labels: Counter[str] = Counter()
            rules = svc.rules[name]
            for label, n in conn.execute(
                """SELECT v.label, COUNT(*) FROM verdicts v JOIN items i ON i.id = v.item_id
                   WHERE i.project_id = ? AND v.status = 'resolved' AND i.gold IS NULL
                   GROUP BY v.label""",
                (pid,),
            ):
                if rules.kind == "multi":
                    for lab in json.loads(label):
                        labels[lab] += n
                else:
                    labels[str(label)] += n
            timeline = [
                (float(t), int(c))
                for t, c in conn.execute(
                    """SELECT CAST(x.answered_at / 60 AS INTEGER) * 60 AS t, COUNT(*)
                       FROM answers x JOIN items i ON i.id = x.item_id
                       WHERE i.project_id = ? AND x.value IS NOT NULL GROUP BY t ORDER BY t""",
                    (pid,),
                )
            ]
            cum, total_ = [], 0
            for t, c in timeline:
                total_ += c
                cum.append((t, total_))
            paused = bool(
                conn.execute("SELECT paused FROM projects WHERE id = ?", (pid,)).fetchone()[0]
            )
            items = sum(counts.values())
            resolved, escalated = counts.get("resolved", 0), counts.get("escalated", 0)
            pending = counts.get("pending", 0)
            eta = None
            if pending and last_hour:
                # Answers still needed, at least the base overlap per pending item.
                need = conn.execute(
                    """SELECT COALESCE(SUM(MAX(needed - n_answers, 0)), 0) FROM items
                       WHERE project_id = ? AND gold IS NULL AND status = 'pending'""",
                    (pid,),
                ).fetchone()[0]
                eta = need / (last_hour / HOUR)
            return Progress(
                project=name,
                title=svc.projects[name].title,
                items=items,
                gold_items=gold_items,
                resolved=resolved,
                escalated=escalated,
                pending=pending,
                answers=answers,
                answers_last_hour=last_hour,
                annotators_active=active,
                annotators_total=members[0],
                suspended=members[1],
                eta_seconds=eta,
                labels=dict(labels.most_common()),
                timeline=cum,
                paused=paused,
            )

        return await self.db.read(q)

    async def annotators(self, name: str, limit: int = 200) -> list[AnnotatorRow]:
        """One row per member: answers, gold accuracy with its interval, speed, status."""
        svc = self.service
        pid = svc.pids[name]

        def q(conn: sqlite3.Connection) -> list[AnnotatorRow]:
            rows = conn.execute(
                """SELECT a.id, a.key, a.name, m.* FROM members m
                   JOIN annotators a ON a.id = m.annotator_id WHERE m.project_id = ?
                   ORDER BY m.answers DESC, a.key LIMIT ?""",
                (pid, limit),
            ).fetchall()
            out = []
            for r in rows:
                secs = [
                    s
                    for (s,) in conn.execute(
                        """SELECT x.seconds FROM answers x JOIN items i ON i.id = x.item_id
                       WHERE x.annotator_id = ? AND i.project_id = ? AND x.value IS NOT NULL
                       ORDER BY x.id DESC LIMIT 500""",
                        (r["id"], pid),
                    )
                ]
                acc = accuracy(r["gold_correct"], r["gold_answers"])
                has = r["gold_answers"] > 0
                platform, _, uid = r["key"].partition(":")
                out.append(
                    AnnotatorRow(
                        key=r["key"],
                        name=r["name"],
                        role=svc.role(UserRef(platform, uid)),
                        status=r["status"],
                        answers=r["answers"],
                        skips=r["skips"],
                        gold_answers=r["gold_answers"],
                        gold_accuracy=acc.raw,
                        accuracy_low=acc.low if has else None,
                        accuracy_high=acc.high if has else None,
                        median_seconds=statistics.median(secs) if secs else None,
                        reason=Reason.decode(r["reason"]),
                    )
                )
            return out

        return await self.db.read(q)

    async def settled_times(self, name: str) -> list[float]:
        """When each settled ordinary item got its last answer, oldest first."""
        return await self.db.read(quality_queries.settled_times, self.service.pids[name])

    async def disagreements(self, name: str, limit: int = 20) -> list[Disagreement]:
        """Escalated items first, then the least confident items with several answers."""
        pid = self.service.pids[name]

        def q(conn: sqlite3.Connection) -> list[Disagreement]:
            rows = conn.execute(
                """SELECT i.ext_id, i.text, v.status, v.votes, v.confidence
                   FROM verdicts v JOIN items i ON i.id = v.item_id
                   WHERE i.project_id = ? AND v.n_answers >= 2 AND v.confidence < 1
                   ORDER BY v.status = 'escalated' DESC, v.confidence, i.seq LIMIT ?""",
                (pid, limit),
            ).fetchall()
            return [Disagreement(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

        return await self.db.read(q)

    async def agreement(self, name: str) -> dict[str, float | int]:
        """Fleiss' kappa and Krippendorff's alpha over the project's counted answers."""
        pid = self.service.pids[name]
        rules = self.service.rules[name]
        if rules.method == "dawid-skene":
            await recompute(self.service, name)  # batch verdicts: fresh when asked

        def q(conn: sqlite3.Connection) -> list[tuple[int, int, str]]:
            return conn.execute(
                """SELECT x.item_id, x.annotator_id, x.value FROM answers x
                   JOIN items i ON i.id = x.item_id
                   WHERE i.project_id = ? AND x.value IS NOT NULL AND x.is_gold = 0
                     AND x.expert = 0 AND x.counted = 1""",
                (pid,),
            ).fetchall()

        rows = await self.db.read(q)
        return agreement_figures(rows, rules.kind, rules.choices)


def agreement_figures(
    rows: list[tuple[int, int, str]], kind: str, choices: tuple[str, ...]
) -> dict[str, float | int]:
    """Fleiss' kappa and Krippendorff's alpha for (item, annotator, value) rows."""
    by_item: dict[int, dict[str, str]] = {}
    for item, annotator, value in rows:
        by_item.setdefault(item, {})[str(annotator)] = value
    shared = {k: list(v.values()) for k, v in by_item.items() if len(v) >= 2}
    cats = sorted({v for vs in shared.values() for v in vs})
    out: dict[str, float | int] = {"items": len(shared), "answers": len(rows)}
    if not shared or kind in ("multi", "text"):
        out.update(fleiss_kappa=float("nan"), krippendorff_alpha=float("nan"))
        return out
    index = {c: i for i, c in enumerate(cats)}
    counts = np.zeros((len(shared), len(cats)))
    for r, vs in enumerate(shared.values()):
        for v in vs:
            counts[r, index[v]] += 1
    out["fleiss_kappa"] = agr.fleiss_kappa(counts)
    units = {str(item): by_item[item] for item in shared}
    level: agr.Level = "interval" if kind == "rating" else "nominal"
    if kind == "rating":
        out["krippendorff_alpha"] = agr.krippendorff_alpha(
            {u: {c: float(v) for c, v in cs.items()} for u, cs in units.items()}, level=level
        )
    else:
        out["krippendorff_alpha"] = agr.krippendorff_alpha(units, level=level)
    return out
