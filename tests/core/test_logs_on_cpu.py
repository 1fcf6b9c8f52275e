"""core.logs.module_logger: the level comes from $MASKSEARCH_LOGGING_LEVEL, else the module's default."""

from __future__ import annotations

import logging

import pytest

from masksearch.core.logs import LEVEL_ENV, module_logger


@pytest.mark.parametrize(
    ("env", "default", "expected"),
    [
        (None, "WARN", logging.WARNING),  # unset: the module's default
        (None, "INFO", logging.INFO),  # a module that reports progress by default
        ("DEBUG", "WARN", logging.DEBUG),  # the variable wins over the default
        ("info", "WARN", logging.INFO),  # any case
        ("", "WARN", logging.WARNING),  # set but empty: the default
        (None, None, logging.NOTSET),  # no default: the root logger's level (--log-level) applies
    ],
)
def test_level(monkeypatch, env, default, expected):
    if env is None:
        monkeypatch.delenv(LEVEL_ENV, raising=False)
    else:
        monkeypatch.setenv(LEVEL_ENV, env)
    logger = module_logger(f"masksearch.test_logs.{env}.{default}", default)
    assert logger.level == expected and logger is logging.getLogger(logger.name)
