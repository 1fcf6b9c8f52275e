"""``masksearch corpus build``: write a Search-R1 corpus, JSONL or parquet (see :mod:`masksearch.data.corpus`)."""

from __future__ import annotations

import argparse

from masksearch.core.cli_support import add_command, add_group, add_option, flag_values
from masksearch.core.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(subparsers, "corpus", "Build retrieval corpora.", "corpus_command", required=True)
    build = add_command(sub, "build", _build)
    build.add_argument(
        "--out",
        required=True,
        help="Output corpus file; its suffix picks the format: .jsonl (also .json, .ndjson) for JSONL, "
        ".parquet for parquet (required).",
    )
    add_option(
        build,
        "--source",
        "embedded",
        "'embedded' (~10k Wikipedia lead passages, CC BY-SA) or a .jsonl/.parquet file with "
        "id/title/text or id/contents",
    )
    add_option(
        build,
        "--chunk-words",
        100,
        "Split longer documents into ~N-word passages that keep the title; 0 disables",
    )
    add_option(
        build, "--strict", False, "Fail on the first bad row instead of skipping it", shown="skip and count"
    )
    add_option(build, "--limit", None, "Read at most N source documents", shown="all", type=int)
    add_option(build, "--no-progress", False, "Hide the progress bar", shown="shown")


def _build(args: argparse.Namespace) -> int:
    """Write a Search-R1 corpus ({'id', 'contents': 'Title\\ntext'}) as JSONL or parquet.

    Build a corpus from the embedded Wikipedia passages or a JSONL/parquet file.
    """
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
