"""Checks that turn the usual set-up mistakes into one clear line before Ray starts.

Without them a missing torch, a different verl or a typo in the model path surfaces minutes later
as a traceback inside a Ray worker, and a typo'd retriever setting trains a whole run on "Search
failed" observations. The retriever check loads the index (``masksearch.env.retriever_index`` or
``$MASKSEARCH_INDEX_DIR``) or polls the server's ``/health`` (``masksearch.env.retriever_url`` or
``$MASKSEARCH_RETRIEVER_URL``) for up to ``$MASKSEARCH_RETRIEVER_WAIT_S`` seconds (default 60).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from masksearch.backends.plugin import REQUIRED_VERL_VERSION
from masksearch.core.errors import UserFacingError, one_line

MODEL_PATH_KEYS = ("actor_rollout_ref.model.path", "critic.model.path")
RETRIEVER_WAIT_ENV = "MASKSEARCH_RETRIEVER_WAIT_S"  # read by search_tool.client.retriever_wait_s


def check_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        raise UserFacingError(
            "PyTorch is not installed. Fix: pip install torch==2.13.0 (the CPU wheel; `make install` does this) "
            "or the CUDA build that matches your cluster"
        )


def check_verl() -> None:
    try:
        found = importlib.metadata.version("verl")
    except importlib.metadata.PackageNotFoundError:
        raise UserFacingError(
            f"verl is not installed. Fix: pip install verl=={REQUIRED_VERL_VERSION}"
        ) from None
    if found != REQUIRED_VERL_VERSION:
        raise UserFacingError(
            f"masksearch patches verl {REQUIRED_VERL_VERSION} internals but verl {found} is installed. "
            f"Fix: pip install verl=={REQUIRED_VERL_VERSION}"
        )


def override_value(overrides: Sequence[str], key: str) -> str | None:
    """The value of ``key=...`` (or ``+key=...``/``++key=...``) in Hydra overrides; last one wins."""
    value = None
    for item in overrides:
        name, sep, rest = item.partition("=")
        if sep and name.lstrip("+~") == key:
            value = rest.strip().strip("'\"")
    return value


def _looks_local(path: str) -> bool:
    """Hub ids look like ``org/name``; anything else (absolute, relative, bare) is a folder."""
    return path.startswith(("/", ".", "~")) or path.count("/") != 1


def check_model_path(path: str, key: str = "actor_rollout_ref.model.path") -> None:
    """A local model folder must exist and hold ``config.json``; a hub id must be cached when offline."""
    expanded = Path(path).expanduser()
    if expanded.exists():
        if expanded.is_dir() and not (expanded / "config.json").is_file():
            raise UserFacingError(
                f"{key}={path}: the folder has no config.json, so it is not a Hugging Face model"
            )
        return
    if _looks_local(path):
        raise UserFacingError(
            f"{key}={path}: no such folder. Use `masksearch model path` for the embedded default model"
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
    if offline:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(path, "config.json"), str):
            raise UserFacingError(
                f"{key}={path}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                "download it first or pass a local folder"
            )


def retriever_wait_s() -> float:
    """Seconds to wait for a retrieval server: ``$MASKSEARCH_RETRIEVER_WAIT_S``, default 60."""
    from masksearch.search_tool.client import retriever_wait_s as read

    try:
        return read()
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None


def check_retriever(overrides: Sequence[str], wait_s: float | None = None) -> dict | None:
    """Load the configured index or wait for the configured server; None when none is configured.

    The env's agent loop reads the same settings (``SearchEnvConfig.resolve``): the overrides'
    ``masksearch.env.retriever_*``, else ``$MASKSEARCH_INDEX_DIR`` / ``$MASKSEARCH_RETRIEVER_URL``.
    """
    from masksearch.search_tool.client import RetrieverUnavailable, make_search_client

    index = override_value(overrides, "masksearch.env.retriever_index")
    url = override_value(overrides, "masksearch.env.retriever_url")
    index = None if index in (None, "", "null") else index
    url = None if url in (None, "", "null") else url
    if index and url:
        raise UserFacingError(
            "set only one of masksearch.env.retriever_index and masksearch.env.retriever_url"
        )
    if not index and not url:
        index = os.environ.get("MASKSEARCH_INDEX_DIR") or None
        url = None if index else os.environ.get("MASKSEARCH_RETRIEVER_URL") or None
    if not index and not url:
        return None
    wait = retriever_wait_s() if wait_s is None else wait_s
    try:
        client = make_search_client(index=index, url=url, timeout_s=min(10.0, wait))
        try:
            return client.wait_ready(wait)
        finally:
            client.close()
    except (RetrieverUnavailable, ValueError) as exc:
        key = "masksearch.env.retriever_index" if index else "masksearch.env.retriever_url"
        raise UserFacingError(f"{key}: {one_line(exc, None)}") from None


def check_judge(overrides: Sequence[str]) -> None:
    """``answer_reward=llm_judge`` (or the judge among ``eval_metrics``) needs an endpoint before Ray starts."""
    prefix = "reward.custom_reward_function.reward_kwargs."
    reward = override_value(overrides, prefix + "answer_reward") or ""
    metrics = override_value(overrides, prefix + "eval_metrics") or ""
    if "llm_judge" not in reward and "llm_judge" not in metrics:
        return
    if override_value(overrides, prefix + "answer_reward_options.url") or os.environ.get(
        "MASKSEARCH_JUDGE_URL"
    ):
        return
    raise UserFacingError(
        "llm_judge needs an endpoint: export MASKSEARCH_JUDGE_URL (and MASKSEARCH_JUDGE_MODEL, "
        "MASKSEARCH_JUDGE_API_KEY); without one every answer would silently fall back to the rule reward"
    )


def run_preflight(overrides: Sequence[str]) -> None:
    check_torch()
    check_verl()
    for key in MODEL_PATH_KEYS:
        value = override_value(overrides, key)
        if value:
            check_model_path(value, key)
    check_judge(overrides)
    check_retriever(overrides)
