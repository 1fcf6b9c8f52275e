"""``masksearch qa prepare``: turn a QA file into verl RL rows (same schema as RAMP)."""

from __future__ import annotations

import argparse
from pathlib import Path

from masksearch.core.cli_support import add_group
from masksearch.core.errors import UserFacingError
from masksearch.data.prompts import add_prompt_args


def register(subparsers: argparse._SubParsersAction) -> None:
    qa_sub = add_group(subparsers, "qa", "Question-answering data.", "qa_command", metavar="<qa command>")
    p = qa_sub.add_parser(
        "prepare",
        help="Convert QA JSONL/JSON/parquet into a verl RL parquet file.",
        description="Reads {question, golden_answers|answer|answers} records; skips rows with no answer.",
    )
    p.add_argument(
        "--input", required=True, help="QA file (.jsonl, .json, .parquet) or fanoutqa:dev (required)."
    )
    p.add_argument("--out", required=True, help="Output .parquet file (required; replaced if it exists).")
    p.add_argument("--data-source", default=None, help="Dataset name (default: from the file name).")
    p.add_argument("--split", default="train", help="Split name stored in extra_info.split (default: train).")
    add_prompt_args(p, "QA")
    p.set_defaults(handler=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from masksearch.data.outputs import check_out_file, writing
    from masksearch.data.prompts import QA_TEMPLATE, load_prompt_template
    from masksearch.data.qa import default_data_source, prepare_qa, read_qa_records
    from masksearch.data.qa_sets import is_builtin_qa_source
    from masksearch.data.schema import write_rows

    src = Path(args.input)
    if not src.is_file() and not is_builtin_qa_source(args.input):
        raise UserFacingError(f"input not found: {src}")
    check_out_file(args.out, suffixes=(".parquet",))
    try:
        rows, summary = prepare_qa(
            read_qa_records(src),
            data_source=args.data_source or default_data_source(src),
            split=args.split,
            one_shot=args.one_shot,
            agent_name=args.agent_name,
            template=load_prompt_template(args.prompt_file, QA_TEMPLATE),
        )
    except (ValueError, OSError) as exc:
        raise UserFacingError(str(exc)) from exc
    if not rows:
        skipped = ", ".join(f"{k}={v}" for k, v in summary.to_dict()["skipped"].items())
        raise UserFacingError(
            f"{args.input}: no usable question/answer rows (read {summary.read}; skipped: {skipped}); "
            "nothing written"
        )
    with writing(args.out):
        path = write_rows(rows, args.out)
    skipped = ", ".join(f"{k}={v}" for k, v in summary.to_dict()["skipped"].items())
    print(f"read {summary.read}, wrote {summary.written} rows to {path}; skipped: {skipped}")
    return 0
