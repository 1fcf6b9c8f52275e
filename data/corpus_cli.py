"""``masksearch corpus build``: write a Search-R1 corpus, JSONL or parquet (see :mod:`masksearch.data.corpus`)."""

from __future__ import annotations

import argparse

from masksearch.core.cli_support import add_group, flag_values
from masksearch.core.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(subparsers, "corpus", "Build retrieval corpora.", "corpus_command", required=True)
    build = sub.add_parser(
        "build",
        help="Write a Search-R1 corpus ({'id', 'contents': 'Title\\ntext'}) as JSONL or parquet.",
        description="Build a corpus from the embedded Wikipedia passages or a JSONL/parquet file.",
    )
    build.add_argument(
        "--out",
        required=True,
        help="Output corpus file; its suffix picks the format: .jsonl (also .json, .ndjson) for JSONL, "
        ".parquet for parquet (required).",
    )
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
        "--strict",
        action="store_true",
        help="Fail on the first bad row instead of skipping it (default: skip and count).",
    )
    build.add_argument(
        "--limit", type=int, default=None, help="Read at most N source documents (default: all)."
    )
    build.add_argument("--no-progress", action="store_true", help="Hide the progress bar (default: shown).")
    build.set_defaults(handler=_build)


def _build(args: argparse.Namespace) -> int:
    from masksearch.data.corpus import OUT_SUFFIXES, CorpusError, build_corpus
    from masksearch.data.outputs import check_out_file, writing

    if args.limit is not None and args.limit <= 0:
        raise UserFacingError("--limit must be a positive integer")
    check_out_file(args.out, suffixes=OUT_SUFFIXES, note=" (the suffix picks the format)")
    try:
        with writing(args.out):
            flags = flag_values(args, ("chunk_words", "strict", "limit"))
            report = build_corpus(args.out, args.source, show_progress=not args.no_progress, **flags)
    except CorpusError as exc:
        raise UserFacingError(str(exc)) from None
    print(report.summary())
    print(f"sha256: {report.sha256}")
    return 0
