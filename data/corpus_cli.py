"""``masksearch corpus build``: write a Search-R1 JSONL corpus (see :mod:`masksearch.data.corpus`)."""

from __future__ import annotations

import argparse

from masksearch.core.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser("corpus", help="Build retrieval corpora.")
    sub = corpus.add_subparsers(dest="corpus_command", metavar="<action>", required=True)
    build = sub.add_parser(
        "build",
        help="Write a Search-R1 JSONL corpus ({'id', 'contents': 'Title\\ntext'}).",
        description="Build a corpus from the embedded Wikipedia passages or a JSONL/parquet file.",
    )
    build.add_argument("--out", required=True, help="Output JSONL path.")
    build.add_argument(
        "--source",
        default="embedded",
        help="'embedded' (~10k Wikipedia lead passages, CC BY-SA) or a .jsonl/.parquet file with "
        "id/title/text or id/contents (default: embedded).",
    )
    build.add_argument(
        "--chunk-words",
        type=int,
        default=100,
        help="Split longer documents into ~N-word passages that keep the title; 0 disables (default: 100).",
    )
    build.add_argument(
        "--strict", action="store_true", help="Fail on the first bad row instead of skipping it."
    )
    build.add_argument("--limit", type=int, default=None, help="Read at most N source documents.")
    build.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    build.set_defaults(handler=_build)


def _build(args: argparse.Namespace) -> int:
    from masksearch.data.corpus import CorpusError, build_corpus

    if args.limit is not None and args.limit <= 0:
        raise UserFacingError("--limit must be a positive integer")
    try:
        report = build_corpus(
            args.out,
            args.source,
            chunk_words=args.chunk_words,
            strict=args.strict,
            limit=args.limit,
            show_progress=not args.no_progress,
        )
    except CorpusError as exc:
        raise UserFacingError(str(exc)) from None
    print(report.summary())
    print(f"sha256: {report.sha256}")
    return 0
