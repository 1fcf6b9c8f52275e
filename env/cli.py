"""``masksearch chat``: answer one question with search and print the whole trajectory.

    masksearch chat --model Qwen/Qwen2.5-0.5B-Instruct --index indexes/wiki-bm25 "Who wrote Tosca?"
    masksearch chat --backend openai --url http://127.0.0.1:8000 --model qwen --tokenizer DIR \\
        --retriever-url http://127.0.0.1:9000 "Who wrote Tosca?"

Heavy modules (torch, transformers, the retriever) are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from masksearch.core.errors import UserFacingError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "chat",
        help="Answer a question with the search environment and print every turn.",
        description="Run one search episode (think / search / information / answer) and print it.",
    )
    p.add_argument("question", help="The question to answer.")
    p.add_argument(
        "--model", required=True, help="Model dir or hub name (hf, vllm) or served model name (openai)."
    )
    p.add_argument(
        "--backend", choices=("hf", "vllm", "openai"), default="hf", help="Generator (default: hf)."
    )
    p.add_argument("--url", help="OpenAI-compatible server URL (--backend openai).")
    p.add_argument(
        "--api",
        choices=("completions", "chat"),
        default="completions",
        help="OpenAI API (default: completions).",
    )
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="Environment variable holding the bearer token for --url (default: OPENAI_API_KEY).",
    )
    p.add_argument("--tokenizer", help="Tokenizer dir or hub name (default: --model).")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--index", help="In-process index directory (or $MASKSEARCH_INDEX_DIR).")
    where.add_argument("--retriever-url", help="Retrieval server URL (or $MASKSEARCH_RETRIEVER_URL).")
    p.add_argument("--max-turns", type=int, help="Most model turns (default: 4).")
    p.add_argument("--topk", type=int, help="Documents per search (default: 3).")
    p.add_argument("--max-obs-tokens", type=int, help="Most tokens per observation (default: 512).")
    p.add_argument(
        "--max-new-tokens", type=int, default=1024, help="Response budget in tokens (default: 1024)."
    )
    p.add_argument("--system-prompt", help="Replace the QA system prompt.")
    p.add_argument("--no-example", action="store_true", help="Leave the worked example out of the prompt.")
    p.add_argument(
        "--temperature", type=float, default=0.0, help="Sampling temperature (default: 0, greedy)."
    )
    p.add_argument("--json", action="store_true", help="Print the trajectory as JSON.")
    p.set_defaults(handler=_chat)


def _chat(args: argparse.Namespace) -> int:
    from masksearch.env.config import SearchEnvConfig
    from masksearch.env.generators import GenerationError
    from masksearch.env.prompts import build_messages
    from masksearch.env.retrieval import get_search_client
    from masksearch.env.standalone import format_trajectory, run_search_episode

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
        client = get_search_client(config)
        client.wait_ready()  # load the index / wait for the server before any model work
    except (ValueError, OSError, ImportError) as exc:
        raise UserFacingError(str(exc)) from exc
    if args.max_new_tokens < 1:
        raise UserFacingError("--max-new-tokens must be >= 1")

    generator, tokenizer = _make_generator(args)
    messages = build_messages(args.question, args.system_prompt, one_shot=not args.no_example)
    try:
        trajectory = run_search_episode(
            generator, tokenizer, messages, client, config, max_response_tokens=args.max_new_tokens
        )
    except GenerationError as exc:
        raise UserFacingError(f"generation failed: {exc}") from exc
    except ValueError as exc:
        raise UserFacingError(str(exc)) from exc
    if args.json:
        print(json.dumps(trajectory.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_trajectory(trajectory))
    return 0


def _make_generator(args: argparse.Namespace) -> tuple[Any, Any]:
    try:
        if args.backend == "openai":
            if not args.url:
                raise UserFacingError("--backend openai needs --url")
            from transformers import AutoTokenizer

            from masksearch.env.generators import OpenAIGenerator

            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
            api_key = os.environ.get(args.api_key_env) or None
            gen = OpenAIGenerator(args.url, args.model, api_key, api=args.api, temperature=args.temperature)
            return gen, tokenizer
        if args.backend == "vllm":
            from masksearch.env.generators import VLLMGenerator

            gen = VLLMGenerator(args.model, temperature=args.temperature)
            return gen, gen.tokenizer
        from masksearch.env.generators import HFGenerator

        tokenizer = None
        if args.tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        gen = HFGenerator(args.model, tokenizer=tokenizer, temperature=args.temperature)
        return gen, gen.tokenizer
    except (OSError, ImportError, ValueError) as exc:
        raise UserFacingError(
            f"cannot load model {args.model!r}: {' '.join(str(exc).split())[:300]}"
        ) from exc
