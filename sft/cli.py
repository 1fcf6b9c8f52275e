"""``masksearch sft …``: synthesize, convert, train, serve, evolve.

Listed in ``masksearch.cli.main.COMMAND_MODULES``; also runnable alone as
``python -m masksearch.sft.cli <action> …`` (the evolve loop starts its teacher server that
way). Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from masksearch.core.cli_support import add_group, flag_values, settings_from_args
from masksearch.core.errors import UserFacingError, one_line
from masksearch.env.cli_options import add_env_args


def register(subparsers: argparse._SubParsersAction) -> None:
    what = "SFT stage: trajectory synthesis, SFT through verl, self-evolving loop."
    sub = add_group(subparsers, "sft", what, "sft_command", required=True)
    _register_synthesize(sub)
    _register_convert(sub)
    _register_train(sub)
    _register_serve(sub)
    _register_evolve(sub)


# ------------------------------------------------------------------------------------ options
def _teacher_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--data", required=True, help="RAMP or QA parquet (masksearch ramp build / qa prepare).")
    p.add_argument(
        "--endpoint",
        required=required,
        help="Teacher's OpenAI-compatible server, e.g. http://127.0.0.1:8000.",
    )
    p.add_argument("--model", required=required, help="Teacher's served model name.")
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="Env var holding the teacher's API key (default: OPENAI_API_KEY).",
    )
    add_env_args(p, retriever_required=True, system_prompt=False)  # the env's flags and defaults, as in RL
    p.add_argument("--out", required=True, help="Output folder (an existing one is resumed).")
    p.add_argument(
        "--tokenizer", default=None, help="Student's tokenizer (default: the embedded SmolLM2 one)."
    )
    p.add_argument("--limit", type=int, default=None, help="Only the first N rows.")
    p.add_argument("--concurrency", type=int, default=4, help="Items in flight (default: 4).")
    p.add_argument("--max-sub-questions", type=int, default=4, help="Planner's limit (default: 4).")
    p.add_argument(
        "--max-response-tokens", type=int, default=4096, help="Response budget in tokens (default: 4096)."
    )
    p.add_argument(
        "--answer-check",
        default="em",
        help="Answer reward for the filter: em, f1, recall, llm_judge … (default: em).",
    )
    p.add_argument(
        "--temperature", type=float, default=0.7, help="Teacher sampling temperature (default: 0.7)."
    )
    p.add_argument("--max-tokens", type=int, default=512, help="Tokens per teacher call (default: 512).")
    p.add_argument("--max-attempts", type=int, default=4, help="Attempts per teacher call (default: 4).")
    p.add_argument(
        "--backoff", type=float, default=1.0, help="First backoff in seconds, doubled per retry (default: 1)."
    )
    p.add_argument("--no-cache", action="store_true", help="Do not cache teacher calls on disk.")
    p.add_argument("--no-retry-failed", action="store_true", help="On resume, skip items that failed before.")


def _register_synthesize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synthesize",
        help="Synthesise search trajectories with a teacher and keep the correct ones.",
        description="Planner / query rewriter / observer agents (or, with --mode policy, a served search "
        "agent) solve each row with the retriever; trajectories that pass the tag grammar and the answer "
        "check go to kept.jsonl, the others to rejected.jsonl with a reason; report.json sums it up.",
    )
    _teacher_options(p, required=False)
    p.add_argument(
        "--teacher",
        "--mode",
        dest="mode",
        choices=("agents", "policy", "rules"),
        default="agents",
        help="Teacher kind: LLM agents or a served policy (both need --endpoint/--model), or rules "
        "(deterministic planner / rewriter / observer over the retriever, no endpoint). Default: agents.",
    )
    p.add_argument(
        "--samples", type=int, default=1, help="Trajectories per row (policy teacher; default: 1)."
    )
    p.add_argument(
        "--api",
        choices=("completions", "chat"),
        default="completions",
        help="Policy mode API (default: completions).",
    )
    p.set_defaults(handler=_synthesize)


def _register_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="Kept trajectories -> verl SFT parquet (messages column).")
    p.add_argument("inputs", nargs="+", help="kept.jsonl files or synthesis folders.")
    p.add_argument("--out", required=True, help="Output parquet.")
    p.set_defaults(handler=_convert)


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="SFT through verl (recipes/sft_ramp) and print the HF model folder.",
        description="Runs the SFT recipe (recipes/sft_ramp) in a subprocess; trailing Hydra overrides are passed on.",
    )
    p.add_argument("--data", required=True, help="SFT parquet (masksearch sft convert).")
    p.add_argument("--model", required=True, help="Student model (HF folder or hub id).")
    p.add_argument("--out", required=True, help="Output folder (checkpoints/, train.log, metrics.jsonl).")
    p.add_argument("--batch-size", type=int, default=16, help="Global batch size (default: 16).")
    p.add_argument("--micro-batch-size", type=int, default=2, help="Per-GPU micro batch (default: 2).")
    p.add_argument("--epochs", type=int, default=1, help="Epochs (default: 1).")
    p.add_argument("--steps", type=int, default=None, help="Stop after this many steps.")
    p.add_argument("--max-length", type=int, default=4096, help="Longest sequence in tokens (default: 4096).")
    p.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto", help="CPU overrides (default: auto)."
    )
    p.add_argument("overrides", nargs="*", help="Extra Hydra overrides (key=value).")
    p.set_defaults(handler=_train)


def _register_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="Serve an HF model over the OpenAI API (transformers; for CPU / offline loops).",
        description="POST /v1/completions and /v1/chat/completions backed by transformers generate. "
        "On GPUs prefer: vllm serve DIR --served-model-name NAME --port P",
    )
    p.add_argument("--model", required=True, help="HF model folder.")
    p.add_argument("--host", default="127.0.0.1", help="Bind address (default: 127.0.0.1).")
    p.add_argument("--port", type=int, required=True, help="TCP port.")
    p.add_argument("--served-name", default=None, help="Model name in the API (default: the folder name).")
    p.set_defaults(handler=_serve)


def _register_evolve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evolve",
        help="Self-evolving loop: synthesise -> train -> serve the trained model as the next teacher.",
        description="Online: round 1's teacher is --endpoint/--model (LLM agents). Offline: round 0 is "
        "--round0 (e.g. rules-teacher synthesis folders) and --round0-model the model trained on it; "
        "every later teacher is the previous round's model, run in process, sampling "
        "--samples trajectories per prompt, kept when the training reward gives acc = 1.",
    )
    _teacher_options(p, required=False)
    p.add_argument(
        "--round0",
        nargs="*",
        default=[],
        help="Round-0 synthesis folders merged into every round's data (default: none).",
    )
    p.add_argument("--round0-model", default=None, help="HF folder trained on --round0: round 1's teacher.")
    p.add_argument(
        "--samples", type=int, default=4, help="Trajectories per prompt from served teachers (default: 4)."
    )
    p.add_argument(
        "--sample-temperature",
        type=float,
        default=1.0,
        help="Sampling temperature of served teachers (default: 1.0).",
    )
    p.add_argument("--rounds", type=int, required=True, help="Number of rounds.")
    p.add_argument(
        "--student", required=True, help="Student model trained every round (HF folder or hub id)."
    )
    p.add_argument("--batch-size", type=int, default=16, help="SFT global batch size (default: 16).")
    p.add_argument("--epochs", type=int, default=1, help="SFT epochs per round (default: 1).")
    p.add_argument("--steps", type=int, default=None, help="SFT steps per round (default: one pass).")
    p.add_argument(
        "--serve-cmd",
        default=None,
        help="Command serving {model} on {port} as {name} (default: none, the model runs in process; "
        "e.g. 'vllm serve {model} --port {port} --served-model-name {name}').",
    )
    p.add_argument(
        "--train-override",
        action="append",
        default=[],
        help="Hydra override for SFT (repeatable; default: none).",
    )
    p.set_defaults(handler=_evolve)


# ----------------------------------------------------------------------------------- handlers
def _synthesis_config(args: argparse.Namespace, mode: str) -> Any:
    from masksearch.sft.endpoint import RetryPolicy
    from masksearch.sft.synthesize import SynthesisConfig

    try:
        return settings_from_args(
            SynthesisConfig,
            args,
            mode=mode,
            samples_per_item=getattr(args, "samples", 1),
            retry=RetryPolicy(max_attempts=args.max_attempts, backoff_initial_s=args.backoff),
            retry_failed=not args.no_retry_failed,
            cache=not args.no_cache,
        )
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None


def _inputs(args: argparse.Namespace) -> tuple[Any, Any]:
    """(search client, tokenizer) for the synthesis commands."""
    from masksearch.rewards import get

    if not Path(args.data).is_file():
        raise UserFacingError(f"--data {args.data}: no such file")
    try:
        get(args.answer_check)
    except (KeyError, ValueError) as exc:
        raise UserFacingError(f"--answer-check: {exc}") from None
    from masksearch.search_tool.client import make_search_client

    if args.index and not Path(args.index).is_dir():
        raise UserFacingError(
            f"--index {args.index}: no such folder (build one with 'masksearch index build')"
        )
    try:
        client = make_search_client(index=args.index, url=args.retriever_url)
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"retriever: {exc}") from None
    if args.tokenizer:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        except (OSError, ValueError) as exc:
            raise UserFacingError(
                f"--tokenizer {args.tokenizer!r}: cannot load it ({one_line(exc, 200)})"
            ) from None
    else:
        from masksearch.engine.models import load_embedded_tokenizer

        tokenizer = load_embedded_tokenizer()
    return client, tokenizer


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _synthesize(args: argparse.Namespace) -> int:
    from masksearch.sft.synthesize import synthesize

    config = _synthesis_config(args, args.mode)
    if args.mode != "rules" and not (args.endpoint and args.model):
        raise UserFacingError(f"--teacher {args.mode} needs --endpoint and --model (or use --teacher rules)")
    client, tokenizer = _inputs(args)
    try:
        report = synthesize(
            args.data,
            args.out,
            endpoint_url=args.endpoint,
            model=args.model,
            search_client=client,
            tokenizer=tokenizer,
            config=config,
            api_key=os.environ.get(args.api_key_env) or None,
            serialise_search=args.index is not None,
        )
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    _print_json(report)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from masksearch.sft.convert import write_sft_parquet

    try:
        path, n = write_sft_parquet(args.inputs, args.out)
    except (OSError, ValueError) as exc:
        raise UserFacingError(str(exc)) from None
    print(f"{path}: {n} trajectories")
    return 0


def _trainer(args: argparse.Namespace):
    """The SFT recipe's ``train_sft``, provided by the ``masksearch`` CLI (sft never imports a recipe)."""
    train_sft = getattr(args, "sft_train", None)
    if train_sft is None:
        raise UserFacingError("SFT training runs through the masksearch command (it provides the SFT recipe)")
    return train_sft


def _train(args: argparse.Namespace) -> int:
    train_sft = _trainer(args)
    if not Path(args.data).is_file():
        raise UserFacingError(f"--data {args.data}: no such file")
    cpu = None if args.device == "auto" else args.device == "cpu"
    flags = ("overrides", "batch_size", "micro_batch_size", "epochs", "steps", "max_length")
    result = train_sft(args.data, args.model, args.out, cpu=cpu, **flag_values(args, flags))
    if result.returncode != 0 or result.hf_path is None:
        raise UserFacingError(f"SFT failed (rc={result.returncode}); see {result.log_file}")
    _print_json({"losses": result.losses, "model": str(result.hf_path)})
    print(f"RL start: actor_rollout_ref.model.path={result.hf_path}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from masksearch.sft.serve import serve

    if not (Path(args.model) / "config.json").is_file():
        raise UserFacingError(f"--model {args.model}: not an HF model folder (no config.json)")
    serve(args.model, host=args.host, port=args.port, served_name=args.served_name)
    return 0


def _evolve(args: argparse.Namespace) -> int:
    from masksearch.sft.evolve import evolve

    config = _synthesis_config(args, "agents")
    if not args.round0_model and not (args.endpoint and args.model):
        raise UserFacingError("give --endpoint and --model (online start) or --round0-model (offline start)")
    if args.round0_model and not (Path(args.round0_model) / "config.json").is_file():
        raise UserFacingError(f"--round0-model {args.round0_model}: not an HF model folder (no config.json)")
    train_fn = _trainer(args)
    client, tokenizer = _inputs(args)
    train_kwargs = flag_values(args, ("batch_size", "epochs", "steps"))
    if args.train_override:
        train_kwargs["overrides"] = list(args.train_override)
    try:
        reports = _run_evolve(args, evolve, client, tokenizer, config, train_kwargs, train_fn)
    except RuntimeError as exc:  # e.g. a teacher server that failed to start (its log tail is in the message)
        raise UserFacingError(one_line(exc, None)) from None  # the log tail is already bounded
    _print_json(reports)
    return 0 if reports and "stopped" not in reports[-1] else 1


def _run_evolve(args, evolve, client, tokenizer, config, train_kwargs, train_fn):
    return evolve(
        args.rounds,
        args.data,
        args.out,
        teacher_url=args.endpoint,
        teacher_model=args.model,
        **flag_values(args, ("round0", "round0_model", "serve_cmd")),
        later_rounds={"samples_per_item": args.samples, "temperature": args.sample_temperature},
        student_model=args.student,
        search_client=client,
        tokenizer=tokenizer,
        config=config,
        train_kwargs=train_kwargs,
        train_fn=train_fn,
        api_key=os.environ.get(args.api_key_env) or None,
    )


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m masksearch.sft.cli <action> …``."""
    import logging

    from masksearch.core.cli_support import run_handler

    parser = argparse.ArgumentParser(prog="masksearch")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sft", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=os.getenv("MASKSEARCH_LOGGING_LEVEL", "INFO"))
    return run_handler(args.handler, args, "masksearch sft")


if __name__ == "__main__":
    sys.exit(main())
