"""The flags every search-env command shares, and the one generator factory behind them.

``masksearch chat`` (env), ``masksearch eval`` and ``masksearch sft synthesize|evolve`` declare their
retriever / env flags with :func:`add_env_args` and build the env settings with
:func:`env_config_from_args`, so defaults come from one place, :class:`SearchEnvConfig` (the
values RL uses in ``recipes/dapo_ramp``); ``chat`` and ``eval`` get the settings and a ready search
client from :func:`search_env_from_args`. They declare the generator flags with
:func:`add_generator_args` and load the model with :func:`make_generator`; a local ``--model`` may
be an HF folder or a verl checkpoint (``global_step_N[/actor]``, merged once,
:mod:`masksearch.backends.checkpoints`).

Heavy modules (torch, transformers, the retriever) are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from masksearch.core.cli_support import add_option
from masksearch.core.errors import UserFacingError, one_line
from masksearch.env.config import SearchEnvConfig

__all__ = [
    "add_env_args",
    "add_generator_args",
    "env_config_from_args",
    "make_generator",
    "resolve_local_model",
    "search_env_from_args",
]

_DEFAULTS = SearchEnvConfig()


def add_env_args(
    p: argparse.ArgumentParser, *, retriever_required: bool = False, system_prompt: bool = True
) -> None:
    """``--index``/``--retriever-url``, ``--max-turns``, ``--topk``, ``--max-obs-tokens`` (and ``--system-prompt``).

    Unset values take :class:`SearchEnvConfig`'s defaults (the RL recipe's values).
    """
    where = p.add_mutually_exclusive_group(required=retriever_required)
    where.add_argument(
        "--index", help="In-process index folder (masksearch index build; or $MASKSEARCH_INDEX_DIR)."
    )
    where.add_argument(
        "--retriever-url",
        help="Retrieval server URL (masksearch retriever serve; or $MASKSEARCH_RETRIEVER_URL).",
    )
    p.add_argument(
        "--max-turns",
        type=int,
        help=f"Most model turns per episode, answer included (default: {_DEFAULTS.max_turns}, as in RL).",
    )
    p.add_argument("--topk", type=int, help=f"Documents per search (default: {_DEFAULTS.topk}, as in RL).")
    p.add_argument(
        "--max-obs-tokens",
        type=int,
        help=f"Most tokens per observation (default: {_DEFAULTS.max_obs_tokens}, as in RL).",
    )
    if system_prompt:
        p.add_argument("--system-prompt", help="Replace the system prompt.")


def env_config_from_args(args: argparse.Namespace) -> SearchEnvConfig:
    """The env settings of a command: its flags over ``$MASKSEARCH_INDEX_DIR``/``$MASKSEARCH_RETRIEVER_URL`` over the defaults.

    Raises:
        UserFacingError: a bad value or a missing index folder (one line).
    """
    overrides = {
        "retriever_index": getattr(args, "index", None),
        "retriever_url": getattr(args, "retriever_url", None),
        "max_turns": getattr(args, "max_turns", None),
        "topk": getattr(args, "topk", None),
        "max_obs_tokens": getattr(args, "max_obs_tokens", None),
        "system_prompt": getattr(args, "system_prompt", None),
    }
    try:
        config = SearchEnvConfig.resolve(None, {k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise UserFacingError(one_line(exc)) from None
    if config.retriever_index and not Path(config.retriever_index).is_dir():
        raise UserFacingError(
            f"index folder not found: {config.retriever_index} (build one with 'masksearch index build')"
        )
    return config


def search_env_from_args(args: argparse.Namespace) -> tuple[SearchEnvConfig, Any]:
    """The env settings of a command and its search client, ready: the index loaded or the server
    answering, before any model work (a wrong retriever fails in seconds, not after a model load).

    Raises:
        UserFacingError: a bad value, a missing index, a server that never answers (one line).
    """
    from masksearch.env.retrieval import get_search_client

    config = env_config_from_args(args)
    try:
        client = get_search_client(config)
        client.wait_ready()
    except (ValueError, OSError, ImportError) as exc:
        raise UserFacingError(one_line(exc)) from None
    return config, client


def add_generator_args(p: argparse.ArgumentParser, *, model_required: bool = False) -> None:
    """``--model``, ``--backend``, ``--url``, ``--api``, ``--api-key-env``, ``--tokenizer``, ``--device``,
    ``--dtype``, ``--temperature``, ``--seed``."""
    p.add_argument(
        "--model",
        required=model_required,
        help="HF model folder, verl checkpoint (global_step_N[/actor]), hub name, or served model name (openai).",
    )
    add_option(p, "--backend", "hf", "Generator", choices=("hf", "vllm", "openai"))
    p.add_argument("--url", help="OpenAI-compatible server URL (--backend openai).")
    add_option(p, "--api", "completions", "OpenAI API", choices=("completions", "chat"))
    add_option(
        p,
        "--api-key-env",
        "OPENAI_API_KEY",
        "Environment variable holding the bearer token for --url",
        metavar="NAME",
    )
    p.add_argument("--tokenizer", help="Tokenizer folder or hub name (default: the model's).")
    add_option(p, "--device", None, "torch device for --backend hf", shown="cuda if available")
    add_option(
        p,
        "--dtype",
        None,
        "torch dtype for --backend hf",
        shown="float32 on CPU, where bf16 checkpoints are slow; else the model's",
    )
    add_option(p, "--temperature", 0.0, "Sampling temperature", shown="0, greedy")
    add_option(p, "--seed", 0, "Random seed")


def resolve_local_model(model: str) -> str:
    """A local model folder or verl checkpoint -> HF folder; a hub-style name passes through."""
    from masksearch.backends.checkpoints import CheckpointError, resolve_model_path

    path = Path(model).expanduser()
    looks_like_hub = model.count("/") == 1 and not model.startswith((".", "/", "~")) and not path.exists()
    if looks_like_hub:
        return model
    try:
        return str(resolve_model_path(path))
    except (FileNotFoundError, CheckpointError, OSError) as exc:
        raise UserFacingError(one_line(exc)) from None


DTYPES = ("float32", "float16", "bfloat16", "auto")


def check_device_dtype(args: argparse.Namespace) -> None:
    """``--device`` / ``--dtype`` typos as one-line errors, before anything is loaded."""
    dtype = getattr(args, "dtype", None)
    if dtype is not None and dtype not in DTYPES:
        raise UserFacingError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    device = getattr(args, "device", None)
    if device is not None:
        import torch

        try:
            torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise UserFacingError(
                f"--device {device!r}: not a torch device (e.g. cpu, cuda, cuda:1)"
            ) from None


def make_generator(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(generator, tokenizer, the model path actually loaded) for the flags of :func:`add_generator_args`."""
    check_device_dtype(args)
    model = args.model
    try:
        if args.backend == "openai":
            if not args.url:
                raise UserFacingError("--backend openai needs --url")
            from transformers import AutoTokenizer

            from masksearch.env.generators import OpenAIGenerator

            tok_src = args.tokenizer or model
            if Path(tok_src).expanduser().exists():
                tok_src = resolve_local_model(tok_src)
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
        model = resolve_local_model(model)
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
        dtype = None if dtype == "auto" else dtype
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
        raise UserFacingError(f"cannot load model {args.model!r}: {one_line(exc)}") from None
