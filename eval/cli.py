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

from masksearch.core.errors import UserFacingError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="Evaluate a model (or verl checkpoint) on QA sets with search; compare runs.",
        description=(
            "Run the search environment over QA datasets, score EM/F1/recall (and an LLM judge), and "
            "write results.json, results.md and trajectories.jsonl; re-running resumes. "
            "With --compare, print a table (and --plot a bar chart) of finished runs."
        ),
    )
    p.add_argument(
        "--model",
        help="HF model folder, verl checkpoint (global_step_N[/actor]), hub name, or served model name (openai).",
    )
    p.add_argument(
        "--data",
        action="append",
        help="Comma-separated datasets: RL .parquet (qa prepare), QA .jsonl/.json, or fanoutqa:dev. Repeatable.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--index", help="In-process index folder (or $MASKSEARCH_INDEX_DIR).")
    where.add_argument("--retriever-url", help="Retrieval server URL (or $MASKSEARCH_RETRIEVER_URL).")
    p.add_argument("--out", help="Output folder (an existing run there is resumed).")
    p.add_argument(
        "--backend", choices=("hf", "vllm", "openai"), default="hf", help="Generator (default: hf)."
    )
    p.add_argument("--url", help="OpenAI-compatible server URL (--backend openai).")
    p.add_argument("--api", choices=("completions", "chat"), default="completions", help="OpenAI API.")
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="Environment variable holding the bearer token for --url (default: OPENAI_API_KEY).",
    )
    p.add_argument("--tokenizer", help="Tokenizer folder or hub name (default: the model's).")
    p.add_argument(
        "--device", default=None, help="torch device for --backend hf (default: cuda if available)."
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="torch dtype for --backend hf (default: float32 on CPU, where bf16 checkpoints are slow; else the model's).",
    )
    p.add_argument("--max-samples", type=int, help="Evaluate only the first N samples of each dataset.")
    p.add_argument("--batch-size", type=int, default=8, help="Episodes generated together (default: 8).")
    p.add_argument("--max-turns", type=int, help="Most model turns per episode (default: 4).")
    p.add_argument("--topk", type=int, help="Documents per search (default: 3).")
    p.add_argument("--max-obs-tokens", type=int, help="Most tokens per observation (default: 512).")
    p.add_argument(
        "--max-response-tokens", type=int, default=1024, help="Response budget per episode (default: 1024)."
    )
    p.add_argument(
        "--temperature", type=float, default=0.0, help="Sampling temperature (default: 0, greedy)."
    )
    p.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    p.add_argument("--system-prompt", help="Replace the system prompt of every sample.")
    p.add_argument(
        "--judge",
        action="store_true",
        help="Also score with the LLM judge ($MASKSEARCH_JUDGE_URL/MODEL/API_KEY; on by default when set).",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="Discard an earlier run in --out instead of resuming."
    )
    p.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    cmp_ = p.add_argument_group("comparing runs")
    cmp_.add_argument("--compare", nargs="+", metavar="RUN_DIR", help="Finished run folders to compare.")
    cmp_.add_argument("--plot", help="With --compare: write a grouped bar chart PNG here.")
    cmp_.add_argument("--metric", default="recall", help="With --compare: metric to show (default: recall).")
    p.set_defaults(handler=_eval)


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

    from masksearch.env.config import SearchEnvConfig
    from masksearch.env.retrieval import get_search_client
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
            raise UserFacingError(f"cannot read data {spec!r}: {' '.join(str(exc).split())[:300]}") from None

    overrides = {
        "retriever_index": args.index,
        "retriever_url": args.retriever_url,
        "max_turns": args.max_turns,
        "topk": args.topk,
        "max_obs_tokens": args.max_obs_tokens,
        "system_prompt": args.system_prompt,
    }
    try:
        config = SearchEnvConfig.resolve(None, {k: v for k, v in overrides.items() if v is not None})
        if config.retriever_index and not Path(config.retriever_index).is_dir():
            raise ValueError(f"index folder not found: {config.retriever_index}")
        client = get_search_client(config)
        client.wait_ready()  # load the index / wait for the server before any model work
    except (ValueError, OSError, ImportError) as exc:
        raise UserFacingError(" ".join(str(exc).split())[:300]) from None

    rewards = list(DEFAULT_METRICS)
    if args.judge or os.environ.get("MASKSEARCH_JUDGE_URL"):
        rewards.append("llm_judge")
    settings = EvalSettings(
        batch_size=args.batch_size,
        max_response_tokens=args.max_response_tokens,
        max_samples=args.max_samples,
        answer_rewards=tuple(rewards),
        show_progress=not args.no_progress,
    )
    out = Path(args.out)
    if args.overwrite:
        for name in (TRAJECTORIES_FILE, RESULTS_FILE, RESULTS_MD, RUN_FILE):
            (out / name).unlink(missing_ok=True)

    _seed_everything(args.seed)
    generator, tokenizer, model_path = _make_generator(args)
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


def _resolve_local_model(model: str) -> str:
    """A local model folder or verl checkpoint -> HF folder; a hub-style name passes through."""
    from masksearch.eval.checkpoints import CheckpointError, resolve_model_path

    path = Path(model).expanduser()
    looks_like_hub = model.count("/") == 1 and not model.startswith((".", "/", "~")) and not path.exists()
    if looks_like_hub:
        return model
    try:
        return str(resolve_model_path(path))
    except (FileNotFoundError, CheckpointError, OSError) as exc:
        raise UserFacingError(" ".join(str(exc).split())[:300]) from None


def _make_generator(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(generator, tokenizer, the model path actually loaded)."""
    model = args.model
    try:
        if args.backend == "openai":
            if not args.url:
                raise UserFacingError("--backend openai needs --url")
            from transformers import AutoTokenizer

            from masksearch.env.generators import OpenAIGenerator

            tok_src = args.tokenizer or model
            if Path(tok_src).expanduser().exists():
                tok_src = _resolve_local_model(tok_src)
            tokenizer = AutoTokenizer.from_pretrained(tok_src)
            api_key = os.environ.get(args.api_key_env) or None
            gen = OpenAIGenerator(
                args.url,
                model,
                api_key,
                api=args.api,
                temperature=args.temperature,
                extra_body={"seed": args.seed},
            )
            return gen, tokenizer, model
        model = _resolve_local_model(model)
        tokenizer = None
        if args.tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        if args.backend == "vllm":
            from masksearch.env.generators import VLLMGenerator, vllm_available

            if not vllm_available():
                raise UserFacingError(
                    "--backend vllm needs vllm (pip install 'masksearch[gpu]'); use --backend hf"
                )
            gen = VLLMGenerator(model, temperature=args.temperature, seed=args.seed)
            return gen, tokenizer or gen.tokenizer, model
        from masksearch.env.generators import HFGenerator

        device = args.device
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = args.dtype or ("float32" if device == "cpu" else None)
        gen = HFGenerator(
            model,
            tokenizer=tokenizer,
            temperature=args.temperature,
            seed=args.seed,
            device=device,
            torch_dtype=dtype,
        )
        return gen, gen.tokenizer, model
    except (OSError, ImportError, ValueError) as exc:
        raise UserFacingError(
            f"cannot load model {args.model!r}: {' '.join(str(exc).split())[:300]}"
        ) from None
