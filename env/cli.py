"""``masksearch chat``: answer one question with search and print the whole trajectory.

    masksearch chat --model Qwen/Qwen2.5-0.5B-Instruct --index indexes/wiki-bm25 "Who wrote Tosca?"
    masksearch chat --backend openai --url http://127.0.0.1:8000 --model qwen --tokenizer DIR \\
        --retriever-url http://127.0.0.1:9000 "Who wrote Tosca?"

Heavy modules (torch, transformers, the retriever) are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from masksearch.core.errors import UserFacingError
from masksearch.env.cli_options import add_env_args, add_generator_args, make_generator, search_env_from_args

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "chat",
        help="Answer a question with the search environment and print every turn.",
        description="Run one search episode (think / search / information / answer) and print it.",
    )
    p.add_argument("question", help="The question to answer.")
    add_generator_args(p, model_required=True)
    add_env_args(p)
    p.add_argument(
        "--max-new-tokens", type=int, default=1024, help="Response budget in tokens (default: 1024)."
    )
    p.add_argument("--no-example", action="store_true", help="Leave the worked example out of the prompt.")
    p.add_argument("--json", action="store_true", help="Print the trajectory as JSON.")
    p.set_defaults(handler=_chat)


def _chat(args: argparse.Namespace) -> int:
    from masksearch.env.generators import GenerationError
    from masksearch.env.prompts import build_messages
    from masksearch.env.standalone import format_trajectory, run_search_episode

    config, client = search_env_from_args(args)
    if args.max_new_tokens < 1:
        raise UserFacingError("--max-new-tokens must be >= 1")

    generator, tokenizer, _model_path = make_generator(args)
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
