"""``masksearch eval``: evaluate a model with the search env, or compare finished runs.

    masksearch eval --model checkpoints/run/global_step_200 --data hotpotqa.parquet,fanoutqa:dev \\
        --index indexes/wiki-bm25 --out evals/step200
    masksearch eval --backend openai --url http://127.0.0.1:8000 --model qwen --tokenizer Qwen/Qwen2.5-3B \\
        --data bamboogle.jsonl --retriever-url http://127.0.0.1:9000 --out evals/qwen
    masksearch eval --compare evals/base evals/step200 --plot compare.png --metric recall

Exit codes: 0 done, 2 bad input (one line on stderr), 3 done but some samples failed, 130 interrupted.
Heavy modules (torch, transformers, the retriever) are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from masksearch.core.cli_support import add_command, add_option, settings_from_args
from masksearch.core.errors import UserFacingError, one_line
from masksearch.env.cli_options import (
    add_env_args,
    add_generator_args,
    check_device_dtype,
    make_generator,
    search_env_from_args,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "eval", _eval)
    add_generator_args(p)
    p.add_argument(
        "--data",
        action="append",
        help="Comma-separated datasets: RL .parquet (qa prepare), QA .jsonl/.json, or fanoutqa:dev. Repeatable.",
    )
    add_env_args(p)
    p.add_argument("--out", help="Output folder (an existing run there is resumed).")
    p.add_argument("--max-samples", type=int, help="Evaluate only the first N samples of each dataset.")
    add_option(p, "--batch-size", 8, "Episodes generated together")
    add_option(p, "--max-response-tokens", 1024, "Response budget per episode")
    add_option(
        p,
        "--judge",
        False,
        "Also score with the LLM judge ($MASKSEARCH_JUDGE_URL/MODEL/API_KEY; on by default when set).",
    )
    add_option(p, "--overwrite", False, "Discard an earlier run in --out instead of resuming.")
    add_option(p, "--no-progress", False, "Hide the progress bar.")
    cmp_ = p.add_argument_group("comparing runs")
    cmp_.add_argument("--compare", nargs="+", metavar="RUN_DIR", help="Finished run folders to compare.")
    cmp_.add_argument("--plot", help="With --compare: write a grouped bar chart PNG here.")
    add_option(cmp_, "--metric", "recall", "With --compare: metric to show")


# --------------------------------------------------------------------------- compare
def _compare(args: argparse.Namespace) -> int:
    from masksearch.eval.report import compare_runs, compare_table, plot_comparison

    try:
        labels, sources, table = compare_runs(args.compare, args.metric)
    except (FileNotFoundError, ValueError) as exc:
        raise UserFacingError(str(exc)) from None
    print(compare_table(labels, sources, table, args.metric), end="")
    if args.plot:
        path = plot_comparison(labels, sources, table, args.metric, args.plot)
        print(f"plot -> {path}")
    return 0


# --------------------------------------------------------------------------- evaluate
def _eval(args: argparse.Namespace) -> int:
    """Evaluate a model (or verl checkpoint) on QA sets with search; compare runs.

    Run the search environment over QA datasets, score EM/F1/recall (and an LLM judge), and write
    results.json, results.md and trajectories.jsonl; re-running resumes. With --compare, print a table (and
    --plot a bar chart) of finished runs.
    """
    if args.compare:
        return _compare(args)
    if args.plot:
        raise UserFacingError("--plot needs --compare RUN_DIR ...")
    missing = [
        flag
        for flag, value in (("--model", args.model), ("--data", args.data), ("--out", args.out))
        if not value
    ]
    if missing:
        raise UserFacingError(f"missing {', '.join(missing)} (or use --compare RUN_DIR ...)")
    for flag in ("batch_size", "max_response_tokens"):
        if getattr(args, flag) < 1:
            raise UserFacingError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.max_samples is not None and args.max_samples < 0:
        raise UserFacingError("--max-samples must be >= 0")

    from masksearch.eval.datasets import load_eval_dataset
    from masksearch.eval.metrics import DEFAULT_METRICS
    from masksearch.eval.runner import (
        RESULTS_FILE,
        RESULTS_MD,
        RUN_FILE,
        TRAJECTORIES_FILE,
        EvalResumeError,
        EvalSettings,
        run_eval,
    )

    specs = [s.strip() for entry in args.data for s in entry.split(",") if s.strip()]
    if not specs:
        raise UserFacingError("--data names no dataset")
    datasets = []
    for spec in specs:
        try:
            datasets.append(load_eval_dataset(spec))
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"cannot read data {spec!r}: {one_line(exc)}") from None

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserFacingError(f"--out {out} is a file; give a folder (it holds the run's results)")
    check_device_dtype(args)  # typos fail now, not after the data and the index load

    config, client = search_env_from_args(args)

    rewards = list(DEFAULT_METRICS)
    if args.judge or os.environ.get("MASKSEARCH_JUDGE_URL"):
        from masksearch.rewards import resolve_reward

        try:
            resolve_reward("llm_judge")  # no URL: one line now, not a traceback while scoring
        except ValueError as exc:
            raise UserFacingError(f"--judge: {exc}") from None
        rewards.append("llm_judge")
    settings = settings_from_args(
        EvalSettings, args, answer_rewards=tuple(rewards), show_progress=not args.no_progress
    )
    _seed_everything(args.seed)
    generator, tokenizer, model_path = make_generator(args)
    if args.overwrite:  # only now: a mistyped --model must not wipe the earlier results
        for name in (TRAJECTORIES_FILE, RESULTS_FILE, RESULTS_MD, RUN_FILE):
            (out / name).unlink(missing_ok=True)
    run_info = {
        "model": args.model,
        "model_path": str(model_path),
        "backend": args.backend,
        "temperature": args.temperature,
        "seed": args.seed,
        "data": specs,
    }
    try:
        report = run_eval(
            generator, tokenizer, datasets, client, config, out, settings=settings, run_info=run_info
        )
    except EvalResumeError as exc:
        raise UserFacingError(str(exc)) from None
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; finished batches are in {out / TRAJECTORIES_FILE}: re-run to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        close = getattr(generator, "close", None)
        if callable(close):
            close()
    print((out / RESULTS_MD).read_text(encoding="utf-8"), end="")
    print(report.summary_line())
    if report.failures:
        print(
            f"{report.failures} sample(s) failed; see 'error' in {out / TRAJECTORIES_FILE} (re-run to retry them)"
        )
    return report.exit_code


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy ships with torch
        pass
