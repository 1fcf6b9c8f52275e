"""``masksearch ramp build``: build RAMP train/val parquet files from a passage corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from masksearch.core.cli_support import add_group
from masksearch.core.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    ramp_sub = add_group(
        subparsers, "ramp", "RAMP (masked-span) training data.", "ramp_command", metavar="<ramp command>"
    )
    p = ramp_sub.add_parser(
        "build",
        help="Mask salient spans of corpus passages and write train.parquet / val.parquet.",
        description="Write verl RL rows (data_source=ramp) with 1-4 [mask]s per passage.",
    )
    p.add_argument("--corpus", required=True, help="Search-R1 JSONL corpus ({'id', 'contents'}).")
    p.add_argument("--out", required=True, help="Output folder for train.parquet, val.parquet, summary.json.")
    p.add_argument(
        "--num-samples", type=int, default=None, help="Stop after this many samples (default: all)."
    )
    p.add_argument("--min-masks", type=int, default=1)
    p.add_argument("--max-masks", type=int, default=4)
    p.add_argument(
        "--mask-mix",
        default=None,
        help="Weights for min..max masks, e.g. 0.25,0.25,0.25,0.25 (default: uniform).",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-words", type=int, default=30)
    p.add_argument("--max-words", type=int, default=400)
    p.add_argument("--val-fraction", type=float, default=0.05, help="Share of passages for val.")
    p.add_argument("--extractor", choices=["rule", "spacy", "llm"], default="rule")
    p.add_argument("--spacy-model", default="en_core_web_sm")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL (or MASKSEARCH_LLM_BASE_URL).")
    p.add_argument("--llm-model", default=None, help="Model name (or MASKSEARCH_LLM_MODEL).")
    p.add_argument(
        "--llm-api-key", default=None, help="API key (or MASKSEARCH_LLM_API_KEY / OPENAI_API_KEY)."
    )
    p.add_argument("--llm-timeout", type=float, default=60.0)
    p.add_argument(
        "--llm-cache", default=None, help="Answer cache folder (default ~/.cache/masksearch/llm_spans)."
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="Fail on a malformed passage or an extractor error, and when fewer than --num-samples are built.",
    )
    p.add_argument("--one-shot", action=argparse.BooleanOptionalAction, default=True, help="Worked example.")
    p.add_argument(
        "--show-title", action=argparse.BooleanOptionalAction, default=True, help="Show the passage title."
    )
    p.add_argument("--prompt-file", default=None, help="JSON overriding the template (system/user/example).")
    p.add_argument("--agent-name", default="masksearch_agent")
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")
    p.set_defaults(handler=run_build)


def _extractor_options(args: argparse.Namespace) -> dict[str, object]:
    if args.extractor == "spacy":
        return {"model": args.spacy_model}
    if args.extractor == "llm":
        return {
            "base_url": args.llm_url,
            "model": args.llm_model,
            "api_key": args.llm_api_key,
            "timeout": args.llm_timeout,
            "cache_dir": args.llm_cache,
        }
    return {}


def run_build(args: argparse.Namespace) -> int:
    from masksearch.data.prompts import RAMP_TEMPLATE, load_prompt_template
    from masksearch.data.ramp import RampConfig, build_ramp, parse_mask_mix, read_passages, write_ramp
    from masksearch.data.spans import ExtractorError, ExtractorUnavailable, make_extractor

    corpus = Path(args.corpus)
    if not corpus.is_file():
        raise UserFacingError(f"corpus not found: {corpus}")
    try:
        template = (
            load_prompt_template(args.prompt_file, RAMP_TEMPLATE) if args.prompt_file else RAMP_TEMPLATE
        )
        config = RampConfig(
            num_samples=args.num_samples,
            min_masks=args.min_masks,
            max_masks=args.max_masks,
            mask_mix=parse_mask_mix(args.mask_mix) if args.mask_mix else None,
            seed=args.seed,
            min_words=args.min_words,
            max_words=args.max_words,
            val_fraction=args.val_fraction,
            strict=args.strict,
            one_shot=args.one_shot,
            show_title=args.show_title,
            agent_name=args.agent_name,
            template=template,
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
    print(format_summary(build.summary.to_dict()))
    if args.strict and args.num_samples is not None and build.summary.accepted < args.num_samples:
        raise UserFacingError(
            f"--strict: built {build.summary.accepted} samples, fewer than --num-samples {args.num_samples}; "
            "nothing written"
        )
    paths = write_ramp(build, args.out)
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
