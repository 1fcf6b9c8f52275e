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

from masksearch.core.cli_support import add_command, add_group, add_option, flag_values, settings_from_args
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
    add_option(p, "--api-key-env", "OPENAI_API_KEY", "Env var holding the teacher's API key")
    add_env_args(p, retriever_required=True, system_prompt=False)  # the env's flags and defaults, as in RL
    p.add_argument("--out", required=True, help="Output folder (an existing one is resumed).")
    add_option(p, "--tokenizer", None, "Student's tokenizer", shown="the embedded SmolLM2 one")
    p.add_argument("--limit", type=int, default=None, help="Only the first N rows.")
    add_option(p, "--concurrency", 4, "Items in flight")
    add_option(p, "--max-sub-questions", 4, "Planner's limit")
    add_option(p, "--max-response-tokens", 4096, "Response budget in tokens")
    add_option(p, "--answer-check", "em", "Answer reward for the filter: em, f1, recall, llm_judge …")
    add_option(p, "--temperature", 0.7, "Teacher sampling temperature")
    add_option(p, "--max-tokens", 512, "Tokens per teacher call")
    add_option(p, "--max-attempts", 4, "Attempts per teacher call")
    add_option(p, "--backoff", 1.0, "First backoff in seconds, doubled per retry")
    add_option(p, "--no-cache", False, "Do not cache teacher calls on disk.")
    add_option(p, "--no-retry-failed", False, "On resume, skip items that failed before.")


def _register_synthesize(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "synthesize", _synthesize)
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
    add_option(p, "--api", "completions", "Policy mode API", choices=("completions", "chat"))


def _register_convert(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "convert", _convert)
    p.add_argument("inputs", nargs="+", help="kept.jsonl files or synthesis folders.")
    p.add_argument("--out", required=True, help="Output parquet.")


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", _train)
    p.add_argument("--data", required=True, help="SFT parquet (masksearch sft convert).")
    p.add_argument("--model", required=True, help="Student model (HF folder or hub id).")
    p.add_argument("--out", required=True, help="Output folder (checkpoints/, train.log, metrics.jsonl).")
    add_option(p, "--batch-size", 16, "Global batch size")
    add_option(p, "--micro-batch-size", 2, "Per-GPU micro batch")
    add_option(p, "--epochs", 1, "Epochs")
    p.add_argument("--steps", type=int, default=None, help="Stop after this many steps.")
    add_option(p, "--max-length", 4096, "Longest sequence in tokens")
    add_option(p, "--device", "auto", "CPU overrides", choices=("auto", "cpu", "gpu"))
    p.add_argument("overrides", nargs="*", help="Extra Hydra overrides (key=value).")


def _register_serve(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve", _serve)
    p.add_argument("--model", required=True, help="HF model folder.")
    add_option(p, "--host", "127.0.0.1", "Bind address")
    p.add_argument("--port", type=int, required=True, help="TCP port.")
    add_option(p, "--served-name", None, "Model name in the API", shown="the folder name")


def _register_evolve(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evolve", _evolve)
    _teacher_options(p, required=False)
    add_option(
        p, "--round0", [], "Round-0 synthesis folders merged into every round's data", shown="none", nargs="*"
    )
    p.add_argument("--round0-model", default=None, help="HF folder trained on --round0: round 1's teacher.")
    add_option(p, "--samples", 4, "Trajectories per prompt from served teachers")
    add_option(p, "--sample-temperature", 1.0, "Sampling temperature of served teachers", shown="1.0")
    p.add_argument("--rounds", type=int, required=True, help="Number of rounds.")
    p.add_argument(
        "--student", required=True, help="Student model trained every round (HF folder or hub id)."
    )
    add_option(p, "--batch-size", 16, "SFT global batch size")
    add_option(p, "--epochs", 1, "SFT epochs per round")
    add_option(p, "--steps", None, "SFT steps per round", shown="one pass", type=int)
    add_option(
        p,
        "--serve-cmd",
        None,
        "Command serving {model} on {port} as {name}",
        shown="none, the model runs in process; e.g. 'vllm serve {model} --port {port} --served-model-name {name}'",
    )
    p.add_argument(
        "--train-override",
        action="append",
        default=[],
        help="Hydra override for SFT (repeatable; default: none).",
    )


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
    """Synthesise search trajectories with a teacher and keep the correct ones.

    Planner / query rewriter / observer agents (or, with --mode policy, a served search agent) solve each row
    with the retriever; trajectories that pass the tag grammar and the answer check go to kept.jsonl, the
    others to rejected.jsonl with a reason; report.json sums it up.
    """
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
    """Kept trajectories -> verl SFT parquet (messages column)."""
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
    """SFT through verl (recipes/sft_ramp) and print the HF model folder.

    Runs the SFT recipe (recipes/sft_ramp) in a subprocess; trailing Hydra overrides are passed on.
    """
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
    """Serve an HF model over the OpenAI API (transformers; for CPU / offline loops).

    POST /v1/completions and /v1/chat/completions backed by transformers generate. On GPUs prefer: vllm serve
    DIR --served-model-name NAME --port P
    """
    from masksearch.sft.serve import serve

    if not (Path(args.model) / "config.json").is_file():
        raise UserFacingError(f"--model {args.model}: not an HF model folder (no config.json)")
    serve(args.model, host=args.host, port=args.port, served_name=args.served_name)
    return 0


def _evolve(args: argparse.Namespace) -> int:
    """Self-evolving loop: synthesise -> train -> serve the trained model as the next teacher.

    Online: round 1's teacher is --endpoint/--model (LLM agents). Offline: round 0 is --round0 (e.g.
    rules-teacher synthesis folders) and --round0-model the model trained on it; every later teacher is the
    previous round's model, run in process, sampling --samples trajectories per prompt, kept when the training
    reward gives acc = 1.
    """
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
