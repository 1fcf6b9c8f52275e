"""``masksearch view``: build the static trajectory viewer (and optionally serve it on 127.0.0.1)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from masksearch.core.cli_support import add_command, add_option, flag_values
from masksearch.core.errors import UserFacingError
from masksearch.core.logs import module_logger

logger = module_logger(__name__)


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "view", _run)
    p.add_argument(
        "sources", nargs="*", metavar="SRC", help="Eval runs, verl dump folders, SFT folders, report.json."
    )
    p.add_argument("--out", help="Site folder (required unless --serve is given an existing site).")
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="Two eval runs: also write compare.html with the samples whose score changed from A to B.",
    )
    p.add_argument("--page-size", type=int, default=50, help="Index rows per page (1..500, default 50).")
    p.add_argument(
        "--title", default="masksearch trajectories", help="Index page title (default: %(default)s)."
    )
    add_option(p, "--overwrite", False, "Replace a non-empty --out that is not a viewer site.")
    add_option(p, "--serve", False, "After building (or without SRC: as is), serve --out on 127.0.0.1.")
    p.add_argument(
        "--port", type=int, default=8765, help="Port for --serve (default 8765; 0 = any free port)."
    )


def _run(args: argparse.Namespace) -> int:
    """Write a static site to browse eval runs, verl rollout/validation dumps, SFT data and the learning
    report.

    Read SRC (eval folders with trajectories.jsonl, verl trainer.rollout_data_dir / validation_data_dir
    folders of <step>.jsonl, sft synthesize folders with kept/rejected.jsonl, a make-learn report.json, or
    folders holding any of them up to 3 levels down) and write a self-contained site to --out: index.html
    (filters, sorting, paging, per-run/per-step summaries) and one page per sample. Opens from disk, no
    network. --serve serves the folder on 127.0.0.1.
    """
    from masksearch.viewer.site import build_site, check_out_dir

    if not args.out:
        raise UserFacingError("--out DIR is required")
    out = Path(args.out)
    check_out_dir(out)  # a file there is a one-line error, for --serve too
    if args.sources or args.compare:
        compare = tuple(args.compare) if args.compare else None
        flags = flag_values(args, ("page_size", "title", "overwrite"))
        result = build_site(args.sources, out, compare=compare, **flags)
        print(result.summary_line())
    elif not args.serve:
        raise UserFacingError(
            "nothing to view: give at least one SRC (or --compare A B, or --serve an existing --out)"
        )
    if args.serve:
        from masksearch.viewer.serve import serve_forever

        if not (out / "index.html").is_file():
            raise UserFacingError(
                f"{out} has no index.html; build it first (masksearch view SRC --out {out})"
            )
        serve_forever(out, port=args.port)
    return 0
