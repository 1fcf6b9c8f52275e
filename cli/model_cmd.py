"""``masksearch model …``: where the offline models live."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model", help="Locate or build the offline models (embedded default, tiny test model)."
    )
    actions = parser.add_subparsers(dest="model_command", metavar="<action>", required=True)

    path = actions.add_parser(
        "path", help="Print the local HF folder of the embedded default model (SmolLM2-135M-Instruct)."
    )
    path.add_argument("--cache-dir", type=Path, default=None, help="Where converted models live.")
    path.set_defaults(handler=_path)

    tiny = actions.add_parser(
        "tiny", help="Build a tiny random Qwen2 with the SmolLM2 tokenizer (tests, smoke runs)."
    )
    tiny.add_argument("--out", type=Path, required=True, help="Output folder.")
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--num-layers", type=int, default=2)
    tiny.set_defaults(handler=_tiny)


def _path(args: argparse.Namespace) -> int:
    from masksearch.backends.models import embedded_model_path

    print(embedded_model_path(args.cache_dir))
    return 0


def _tiny(args: argparse.Namespace) -> int:
    from masksearch.backends.models import build_tiny_model

    print(build_tiny_model(args.out, hidden_size=args.hidden_size, num_layers=args.num_layers))
    return 0
