"""Resume: the records already on disk (``kept.jsonl`` / ``rejected.jsonl``) and which ids are done."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from masksearch.core.atomic import atomic_write_text
from masksearch.core.jsonl import UNREADABLE, read_jsonl
from masksearch.core.logs import module_logger
from masksearch.sft.synthesis.config import ENDPOINT_FAILED, KEPT_FILE, REJECTED_FILE

logger = module_logger(__name__)

__all__ = ["prepare_resume", "read_records"]


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (killed writer) is skipped."""

    def warn(_line: int, reason: str) -> None:
        if reason == UNREADABLE:
            logger.warning("%s: skipping an unreadable line (interrupted write?)", path)

    return list(read_jsonl(path, on_skip=warn))


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def prepare_resume(out: Path, retry_failed: bool) -> set[str]:
    """Ids already done; failed records are removed first when they are to be retried."""
    kept = read_records(out / KEPT_FILE)
    rejected = read_records(out / REJECTED_FILE)
    if retry_failed and any(r.get("reason") == ENDPOINT_FAILED for r in rejected):
        rejected = [r for r in rejected if r.get("reason") != ENDPOINT_FAILED]
        _rewrite(out / REJECTED_FILE, rejected)
    elif rejected or kept:
        # rewrite anyway to drop a torn last line left by a killed run
        _rewrite(out / REJECTED_FILE, rejected)
    if kept:
        _rewrite(out / KEPT_FILE, kept)
    return {str(r["id"]) for r in kept + rejected if "id" in r}
