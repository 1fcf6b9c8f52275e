"""``manifest.json``: what an index folder holds, and the check that it fits the corpus in hand.

An index built from one corpus and queried against another returns plausible-looking wrong
passages, which silently corrupts rewards. So every index records the corpus checksum and
parameters it was built with, and loading refuses a mismatch with a message saying what to do.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
FORMAT = "masksearch-index"
FORMAT_VERSION = 1
KINDS = ("bm25", "dense", "hybrid")


class IndexLoadError(ValueError):
    """An index folder is missing, incomplete, or from an unknown format version."""


class IndexMismatchError(IndexLoadError):
    """The index was built from a different corpus than the one given."""


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the libraries an index depends on (recorded, not enforced)."""
    versions = {"python": platform.python_version()}
    for name in ("masksearch", *names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class Manifest:
    """Contents of ``manifest.json``; ``params`` are the retriever's build/search parameters."""

    kind: str
    params: dict[str, Any]
    corpus_sha256: str
    doc_count: int
    corpus_path: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    build_seconds: float = 0.0
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def write(self, folder: str | os.PathLike[str]) -> Path:
        path = Path(folder) / MANIFEST_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> Manifest:
        folder = Path(folder)
        path = folder / MANIFEST_FILE
        if not folder.is_dir():
            raise IndexLoadError(f"index folder not found: {folder}")
        if not path.is_file():
            raise IndexLoadError(
                f"{folder} has no {MANIFEST_FILE}; build an index with "
                "'masksearch index build --corpus C --retriever bm25 --out DIR'"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndexLoadError(f"{path} is not valid JSON: {exc}") from None
        if raw.get("format") != FORMAT:
            raise IndexLoadError(f"{path} is not a masksearch index manifest")
        if raw.get("format_version") != FORMAT_VERSION:
            raise IndexLoadError(
                f"{path} has format version {raw.get('format_version')}, this masksearch reads "
                f"{FORMAT_VERSION}; rebuild the index"
            )
        if raw.get("kind") not in KINDS:
            raise IndexLoadError(f"{path}: unknown retriever kind {raw.get('kind')!r}; known: {list(KINDS)}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})

    def part_dir(self, folder: str | os.PathLike[str], name: str, default: str | None = None) -> Path:
        """``folder/<params.parts[name]>``, refused unless it stays inside ``folder``.

        A hybrid manifest names its parts' sub-folders; an absolute path or ``..`` there would make
        the loader open files anywhere on the machine.
        """
        parts = self.params.get("parts", {name: default})
        sub = parts.get(name) if isinstance(parts, dict) else None
        if not isinstance(sub, str) or not sub:
            raise IndexLoadError(f"{folder}/{MANIFEST_FILE}: params.parts has no {name!r} folder")
        root = Path(folder).resolve()
        path = (root / sub).resolve()
        if Path(sub).is_absolute() or not path.is_relative_to(root) or path == root:
            raise IndexLoadError(
                f"{folder}/{MANIFEST_FILE}: part {name!r} points outside the index folder ({sub!r}); "
                "parts must be sub-folders of the index"
            )
        return path

    def check_corpus(self, corpus_sha256: str, corpus_label: str) -> None:
        """Raise :class:`IndexMismatchError` unless the corpus checksum matches the one indexed."""
        if corpus_sha256 != self.corpus_sha256:
            raise IndexMismatchError(
                f"index was built from a different corpus: {corpus_label} has sha256 "
                f"{corpus_sha256[:12]}…, the index expects {self.corpus_sha256[:12]}… "
                f"(built from {self.corpus_path or 'an unknown path'}, {self.doc_count} passages). "
                "Rebuild the index with 'masksearch index build' or pass the matching corpus."
            )
