"""Report: counts over the records on disk (so a resumed run reports the whole data set)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from masksearch.sft.synthesis.config import ENDPOINT_FAILED, KEPT_FILE, REJECTED_FILE
from masksearch.sft.synthesis.resume import read_records

__all__ = ["build_report"]


def _share(kept: int, processed: int) -> float:
    return round(kept / processed, 4) if processed else 0.0


def _mean(records: list[dict[str, Any]], key: str) -> float:
    """Mean of a record field over the records that have it (older records may lack it)."""
    values = [float(r[key]) for r in records if key in r]
    return round(sum(values) / len(values), 4) if values else 0.0


def build_report(out_dir: str | os.PathLike, items: int | None = None, **extra: Any) -> dict[str, Any]:
    """Counts over ``kept.jsonl`` / ``rejected.jsonl``.

    ``kept_share`` = kept / processed; ``mean_searches`` over kept trajectories;
    ``mean_searches_all``, ``teacher_acc`` (mean training-reward ``acc``) and ``format_ok_share``
    over every trajectory the teacher finished (failed items excluded);
    ``by_mask_count`` gives kept / processed / kept share and the rejection reasons per RAMP mask
    count (``"0"`` = QA rows).
    """
    out = Path(out_dir)
    kept = read_records(out / KEPT_FILE)
    rejected = read_records(out / REJECTED_FILE)
    processed = len(kept) + len(rejected)
    finished = kept + [r for r in rejected if r.get("reason") != ENDPOINT_FAILED]
    reasons = Counter(str(r.get("reason")) for r in rejected)
    every = kept + rejected
    by_mask: dict[str, Any] = {}
    for n in sorted({int(r.get("mask_num") or 0) for r in every}):
        k = sum(1 for r in kept if int(r.get("mask_num") or 0) == n)
        p = sum(1 for r in every if int(r.get("mask_num") or 0) == n)
        why = Counter(str(r.get("reason")) for r in rejected if int(r.get("mask_num") or 0) == n)
        by_mask[str(n)] = {
            "kept": k,
            "processed": p,
            "kept_share": _share(k, p),
            "rejection_reasons": dict(why.most_common()),
        }
    report: dict[str, Any] = {
        "items": items if items is not None else processed,
        "processed": processed,
        "kept": len(kept),
        "rejected": len(rejected) - reasons.get(ENDPOINT_FAILED, 0),
        "failed": reasons.get(ENDPOINT_FAILED, 0),
        "kept_share": _share(len(kept), processed),
        "mean_searches": round(sum(r["num_searches"] for r in kept) / len(kept), 4) if kept else 0.0,
        "teacher_acc": _mean(finished, "acc"),
        "format_ok_share": _mean(finished, "format_ok"),
        "mean_searches_all": (
            round(sum(r["num_searches"] for r in finished) / len(finished), 4) if finished else 0.0
        ),
        "rejection_reasons": dict(reasons.most_common()),
        "by_kind": {
            kind: {
                "kept": sum(1 for r in kept if r.get("kind") == kind),
                "processed": sum(1 for r in every if r.get("kind") == kind),
            }
            for kind in sorted({str(r.get("kind")) for r in every})
        },
        "by_mask_count": by_mask,
    }
    report.update(extra)
    return report
