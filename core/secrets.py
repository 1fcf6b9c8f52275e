"""Secrets (API keys, tokens) by name: which settings are secret, and how to show settings without them.

Keys travel only through the environment (or a key file); never through Hydra overrides, printed
configs, logs or results files. Nothing here reads the environment: callers pass names in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from masksearch.core.urls import has_credentials, public_url

#: Environment variables that hold secrets the project reads (the driver hands them to Ray itself).
SECRET_ENV = (
    "MASKSEARCH_JUDGE_API_KEY",
    "MASKSEARCH_RETRIEVER_TOKEN",
    "OPENAI_API_KEY",
    "HF_TOKEN",
    "WANDB_API_KEY",
)
_SECRET_NAME = re.compile(
    r"(^|[._-])(api_?key|password|passwd|secret|auth_token|access_token|bearer_token|api_token|hf_token|retriever_token)$"
    r"|(^|\.)token$"
)
REDACTED = "<redacted>"


def is_secret_name(name: str) -> bool:
    """Whether a setting's (last dotted) name says it holds a secret.

    >>> [is_secret_name(n) for n in ("api_key", "answer_reward_options.api_key", "OPENAI_API_KEY", "token")]
    [True, True, True, True]
    >>> [is_secret_name(n) for n in ("max_tokens", "token_file", "api_key_env", "pad_token", "secret_sauce")]
    [False, False, False, False, False]
    """
    return bool(_SECRET_NAME.search(name.lower()))


def redact(value: Any) -> Any:
    """A copy of a (nested) mapping/list with every secret-named key's value replaced.

    URLs lose their userinfo and query string.

    >>> redact({"url": "http://u:p@h/?k=1", "api_key": "sk-1", "inner": [{"token": "t"}]})
    {'url': 'http://h/', 'api_key': '<redacted>', 'inner': [{'token': '<redacted>'}]}
    """
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_name(str(k)) and v else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and "://" in value and has_credentials(value):
        return public_url(value)
    return value
