"""``masksearch`` console script: one entry, one subcommand per job.

Each subcommand lives next to the code it drives and exposes ``register(subparsers)``; this file
only lists them, so ``masksearch --help`` stays fast (handlers import heavy modules lazily).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from masksearch.core.cli_support import (
    add_log_level,
    add_log_level_to_subcommands,
    configure_logging,
    run_handler,
)

# Modules that add subcommands. A module listed here must define ``register(subparsers)``.
COMMAND_MODULES = [
    "masksearch.cli.model_cmd",
    "masksearch.data.ramp_cli",
    "masksearch.data.qa_cli",
    "masksearch.data.corpus_cli",
    "masksearch.search_tool.cli",
    "masksearch.env.cli",
    "masksearch.sft.cli",
    "masksearch.eval.cli",
    "masksearch.viewer.cli",
]


def _embedded_corpus():
    from masksearch.data.corpus import embedded_corpus_path

    return embedded_corpus_path()


def _sft_train(*args, **kwargs):
    from masksearch.recipes.sft_ramp.train import train_sft

    return train_sft(*args, **kwargs)


def _version() -> str:
    """The installed distribution's version (``setup.py``'s ``version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("masksearch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="masksearch",
        description="MaskSearch on verl: data, retrieval, training, evaluation.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="Print the version and exit."
    )
    add_log_level(parser)
    # Named corpora for commands of parts below data (``masksearch index build --corpus embedded``).
    # and the SFT recipe's trainer for `masksearch sft train|evolve` (sft never imports a recipe).
    parser.set_defaults(named_corpora={"embedded": _embedded_corpus}, sft_train=_sft_train)
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    add_log_level_to_subcommands(parser)  # `masksearch search … --log-level DEBUG` too
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not configure_logging(args.log_level):
        return 2
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return run_handler(handler, args, f"masksearch {args.command}")


if __name__ == "__main__":
    sys.exit(main())
