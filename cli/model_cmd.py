"""``masksearch model …``: where the offline models live."""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

from masksearch.core.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model", help="Locate or build the offline models (embedded default, tiny test model)."
    )
    actions = parser.add_subparsers(dest="model_command", metavar="<action>", required=True)

    path = actions.add_parser(
        "path",
        help="Print the local HF folder of the embedded default model (SmolLM2-135M-Instruct), "
        "or with --warm-start of its SFT warm start (built once, then cached).",
    )
    path.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="Where converted models live (default: $MASKSEARCH_CACHE/models, else ~/.cache/masksearch/models).",
    )
    path.add_argument(
        "--warm-start",
        action="store_true",
        help="The warm start instead: SmolLM2-135M-Instruct after a short SFT on rules-teacher "
        "trajectories (what `make demo` trains); built on first use, about 6-8 minutes on 2 CPU "
        "cores, with progress on stderr (default: off, the base model).",
    )
    path.set_defaults(handler=_path)

    tiny = actions.add_parser(
        "tiny", help="Build a tiny random Qwen2 with the SmolLM2 tokenizer (tests, smoke runs)."
    )
    tiny.add_argument("--out", type=Path, required=True, help="Output folder (new, or empty).")
    tiny.add_argument(
        "--hidden-size",
        type=int,
        default=64,
        help="Hidden size: a positive multiple of 8, i.e. 2 x the 4 attention heads (default: 64).",
    )
    tiny.add_argument(
        "--num-layers", type=int, default=2, help="Number of transformer layers, at least 1 (default: 2)."
    )
    tiny.set_defaults(handler=_tiny)


def _path(args: argparse.Namespace) -> int:
    if args.warm_start:
        from masksearch.recipes.warm_start import warm_start_path

        print(warm_start_path(cache_dir=args.cache_dir))
        return 0
    from masksearch.engine.models import embedded_model_path

    print(embedded_model_path(args.cache_dir))
    return 0


def _tiny(args: argparse.Namespace) -> int:
    from masksearch.engine.models import build_tiny_model

    _check_tiny_shape(args.hidden_size, args.num_layers, _default_heads(build_tiny_model))
    _check_tiny_out(args.out, args.hidden_size, args.num_layers)
    try:
        path = build_tiny_model(args.out, hidden_size=args.hidden_size, num_layers=args.num_layers)
    except OSError as exc:  # e.g. no permission to write there
        raise UserFacingError(f"--out {args.out}: cannot write the model ({exc.strerror or exc})") from None
    print(path)
    return 0


def _default_heads(build) -> int:
    """The attention heads ``build_tiny_model`` uses (its ``num_heads`` default)."""
    return int(inspect.signature(build).parameters["num_heads"].default)


def _check_tiny_shape(hidden_size: int, num_layers: int, num_heads: int) -> None:
    """The shape is one a Qwen2 can be built from and run with (else one line, exit 2).

    The hidden size splits into ``num_heads`` heads, and each head's size must be even for the
    rotary position embeddings (an odd one builds, then fails at the first forward pass).
    """
    step = 2 * num_heads
    if hidden_size < 1 or hidden_size % step:
        raise UserFacingError(
            f"--hidden-size {hidden_size}: must be a positive multiple of {step} "
            f"({num_heads} attention heads of an even size), e.g. 64"
        )
    if num_layers < 1:
        raise UserFacingError(f"--num-layers {num_layers}: must be at least 1")


def _check_tiny_out(out: Path, hidden_size: int, num_layers: int) -> None:
    """``--out`` is a new folder, an empty one, or a tiny model of this very shape (reused)."""
    if out.exists() and not out.is_dir():
        raise UserFacingError(f"--out {out} is a file; give a folder for the model")
    for parent in out.parents:  # a file on the way: `--out afile/x`
        if parent.exists():
            if not parent.is_dir():
                raise UserFacingError(f"--out {out}: {parent} is a file, not a folder")
            break
    config = out / "config.json"
    if config.is_file():  # build_tiny_model reuses it: only when it is the shape asked for
        try:
            found = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = {}
        shape = (found.get("hidden_size"), found.get("num_hidden_layers"))
        if shape != (hidden_size, num_layers):
            raise UserFacingError(
                f"--out {out} already holds a model with hidden size {shape[0]} and {shape[1]} layer(s); "
                "give another --out or remove it"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise UserFacingError(f"--out {out} is a folder that is not empty; give a new or empty folder")
