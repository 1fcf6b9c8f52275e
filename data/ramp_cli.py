"""``masksearch ramp build``: build RAMP train/val parquet files from a passage corpus."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from masksearch.core.cli_support import add_command, add_group, add_option, settings_from_args
from masksearch.core.errors import UserFacingError
from masksearch.core.logs import module_logger
from masksearch.data.prompts import add_prompt_args

logger = module_logger(__name__, "WARNING")

# Where the LLM extractor's key is looked up when --llm-api-key-env is not given, in order.
DEFAULT_LLM_KEY_ENV = ("MASKSEARCH_LLM_API_KEY", "OPENAI_API_KEY")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def register(subparsers: argparse._SubParsersAction) -> None:
    ramp_sub = add_group(
        subparsers, "ramp", "RAMP (masked-span) training data.", "ramp_command", metavar="<ramp command>"
    )
    p = add_command(ramp_sub, "build", run_build)
    p.add_argument(
        "--corpus",
        required=True,
        help="Corpus file (required): Search-R1 JSONL ({'id', 'contents'}) or id/title/text .jsonl/.parquet.",
    )
    p.add_argument(
        "--out", required=True, help="Output folder for train.parquet, val.parquet, summary.json (required)."
    )
    add_option(
        p, "--overwrite", False, "Replace the files of an existing, non-empty --out folder", shown="refuse"
    )
    add_option(p, "--num-samples", None, "Stop after this many samples", shown="all", type=int)
    add_option(p, "--min-masks", 1, "Fewest [mask]s per sample, 1-4")
    add_option(p, "--max-masks", 4, "Most [mask]s per sample, 1-4")
    add_option(p, "--mask-mix", None, "Weights for min..max masks, e.g. 0.25,0.25,0.25,0.25", shown="uniform")
    add_option(p, "--seed", 0, "Seed for masks, mask counts and the split")
    add_option(p, "--min-words", 30, "Skip passages shorter than this")
    add_option(p, "--max-words", 400, "Skip passages longer than this")
    add_option(p, "--val-fraction", 0.05, "Share of passages for val.parquet, in [0, 1)")
    add_option(
        p,
        "--extractor",
        "rule",
        "Who proposes the spans to mask: rules, a spaCy model, or an LLM endpoint",
        choices=["rule", "spacy", "llm"],
    )
    add_option(p, "--spacy-model", "en_core_web_sm", "spaCy model for --extractor spacy")
    p.add_argument(
        "--llm-url",
        default=None,
        help="OpenAI-compatible base URL for --extractor llm "
        "(default: $MASKSEARCH_LLM_BASE_URL, else $OPENAI_BASE_URL).",
    )
    add_option(p, "--llm-model", None, "Model name for --extractor llm", shown="$MASKSEARCH_LLM_MODEL")
    p.add_argument(
        "--llm-api-key-env",
        default=None,
        metavar="NAME",
        help="Environment variable holding the API key for --llm-url; keys are never taken as flags "
        f"(default: {DEFAULT_LLM_KEY_ENV[0]}, else {DEFAULT_LLM_KEY_ENV[1]}; none set: no key sent).",
    )
    # The old flag took the key itself (visible in `ps` and shell history); it now only says what to do.
    p.add_argument("--llm-api-key", dest="removed_llm_api_key", default=None, help=argparse.SUPPRESS)
    add_option(p, "--llm-timeout", 60.0, "Seconds per LLM request before it is retried or counted as failed")
    p.add_argument(
        "--llm-cache", default=None, help="Answer cache folder (default ~/.cache/masksearch/llm_spans)."
    )
    add_option(
        p,
        "--strict",
        False,
        "Fail on a malformed passage or an extractor error, and when fewer than --num-samples are built",
        shown="count them and go on",
    )
    add_prompt_args(p, "RAMP", show_title=True)
    add_option(p, "--no-progress", False, "Hide the progress bar", shown="shown")


def _refuse_removed_key_flag(args: argparse.Namespace) -> None:
    """``--llm-api-key VALUE`` is refused whatever the extractor: a key typed on a command line
    lands in shell history and process lists."""
    if args.removed_llm_api_key is not None:  # never echo the value: it is probably a key
        raise UserFacingError(
            "--llm-api-key was removed: put the key in an environment variable and pass its name "
            f"with --llm-api-key-env NAME (default: {DEFAULT_LLM_KEY_ENV[0]})"
        )


def _llm_api_key(args: argparse.Namespace) -> str | None:
    """The key from the environment variable ``--llm-api-key-env`` names (never from a flag's value)."""
    _refuse_removed_key_flag(args)
    name = args.llm_api_key_env
    if name is None:
        return next((os.environ[n] for n in DEFAULT_LLM_KEY_ENV if os.environ.get(n)), None)
    if not _ENV_NAME.fullmatch(name):  # not echoed either: a key pasted here is not a name
        raise UserFacingError(
            "--llm-api-key-env takes the NAME of an environment variable (letters, digits, _), not the key"
        )
    if not os.environ.get(name):
        raise UserFacingError(f"--llm-api-key-env {name}: that environment variable is not set or empty")
    return os.environ[name]


def _extractor_options(args: argparse.Namespace) -> dict[str, object]:
    if args.extractor == "spacy":
        return {"model": args.spacy_model}
    if args.extractor == "llm":
        return {
            "base_url": args.llm_url,
            "model": args.llm_model,
            "api_key": _llm_api_key(args) or "",  # "": send none (no fallback to other variables)
            "timeout": args.llm_timeout,
            "cache_dir": args.llm_cache,
        }
    return {}


# The likeliest cure for the largest rejection reason, for the warning on a short build.
_HINTS = {
    "too_short": "lower --min-words",
    "too_long": "raise --max-words",
    "no_span": "lower --min-masks or try another --extractor",
    "all_spans_leak": "lower --min-masks, or --no-show-title if titles give spans away",
    "duplicate": "the corpus repeats passages",
    "malformed": "passages are empty or already hold [mask] or protocol tags",
    "extractor_error": "check the LLM endpoint (--llm-url, --llm-timeout)",
}


def _shortfall(summary, corpus: Path) -> str:
    """Why fewer samples than asked: how many passages were read, and what rejected the rest."""
    if summary.passages_read == 0:
        return f"{corpus} has no passages"
    top = summary.rejected.most_common(1)
    hint = f"; {_HINTS[top[0][0]]}" if top and top[0][0] in _HINTS else ""
    return (
        f"{corpus} has {summary.passages_read} passages, {summary.accepted} usable; "
        f"rejected: {summary.rejected_text()}{hint}"
    )


def run_build(args: argparse.Namespace) -> int:
    """Mask salient spans of corpus passages and write train.parquet / val.parquet.

    Write verl RL rows (data_source=ramp) with 1-4 [mask]s per passage.
    """
    from masksearch.data.outputs import check_out_dir, writing
    from masksearch.data.prompts import RAMP_TEMPLATE, load_prompt_template
    from masksearch.data.ramp import RampConfig, build_ramp, parse_mask_mix, read_passages, write_ramp
    from masksearch.data.spans import ExtractorError, ExtractorUnavailable, make_extractor

    _refuse_removed_key_flag(args)
    corpus = Path(args.corpus)
    if not corpus.is_file():
        raise UserFacingError(f"corpus not found: {corpus}")
    out = check_out_dir(
        args.out, overwrite=args.overwrite, replaces="train.parquet, val.parquet and summary.json"
    )
    try:
        config = settings_from_args(
            RampConfig,
            args,
            template=load_prompt_template(args.prompt_file, RAMP_TEMPLATE),
            mask_mix=parse_mask_mix(args.mask_mix) if args.mask_mix else None,
        )
        extractor = make_extractor(args.extractor, **_extractor_options(args))
    except (ValueError, OSError, ExtractorUnavailable) as exc:
        raise UserFacingError(str(exc)) from exc
    try:
        build = build_ramp(read_passages(corpus), extractor, config, show_progress=not args.no_progress)
    except (ValueError, ExtractorError) as exc:
        raise UserFacingError(str(exc)) from exc
    finally:
        close = getattr(extractor, "close", None)
        if close is not None:
            close()
    summary = build.summary
    if not build.train:
        what = "no samples" if summary.accepted == 0 else f"all {summary.accepted} samples went to val"
        raise UserFacingError(f"{what}; {_shortfall(summary, corpus)}; nothing written")
    print(format_summary(summary.to_dict()))
    if args.num_samples is not None and summary.accepted < args.num_samples:
        if args.strict:
            raise UserFacingError(
                f"--strict: built {summary.accepted} samples, fewer than --num-samples {args.num_samples}; "
                "nothing written"
            )
        logger.warning(
            "asked for %d samples (--num-samples), built %d: %s",
            args.num_samples,
            summary.accepted,
            _shortfall(summary, corpus),
        )
    with writing(out):
        paths = write_ramp(build, out)
    print(f"wrote {paths['train']} ({len(build.train)} rows), {paths['val']} ({len(build.val)} rows)")
    return 0


def format_summary(summary: dict) -> str:
    """A plain-text table: samples per mask count and split, then rejections by reason."""
    per_split = summary["mask_num"]
    counts = sorted({int(k) for c in per_split.values() for k in c})
    lines = ["masks  train    val  total"]
    for k in counts:
        tr, va = per_split["train"].get(k, 0), per_split["val"].get(k, 0)
        lines.append(f"{k:>5}  {tr:>5}  {va:>5}  {tr + va:>5}")
    tr_all, va_all = sum(per_split["train"].values()), sum(per_split["val"].values())
    lines.append(f"{'all':>5}  {tr_all:>5}  {va_all:>5}  {tr_all + va_all:>5}")
    lines.append("")
    lines.append(f"{'rejected':<16} {'passages':>8}")
    for reason, n in summary["rejected"].items():
        lines.append(f"{reason:<16} {n:>8}")
    lines.append(f"{'total rejected':<16} {sum(summary['rejected'].values()):>8}")
    lines.append(f"{'passages read':<16} {summary['passages_read']:>8}")
    lines.append(f"{'spans leaking':<16} {summary['spans_dropped_as_leak']:>8}  (candidates never masked)")
    return "\n".join(lines)
