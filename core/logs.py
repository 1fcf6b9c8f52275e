"""The module logger of every part: ``logger = module_logger(__name__)``.

Style rule 14: a module logs through its own logger, whose level comes from the environment
variable ``MASKSEARCH_LOGGING_LEVEL`` (e.g. ``DEBUG``), so one variable turns every part's logging
up or down in every process, Ray workers included. Written once here instead of two lines (and an
``import os``) at the top of each module.
"""

from __future__ import annotations

import logging
import os

LEVEL_ENV = "MASKSEARCH_LOGGING_LEVEL"


def module_logger(name: str, default: str | None = "WARN") -> logging.Logger:
    """``logging.getLogger(name)`` at the level ``$MASKSEARCH_LOGGING_LEVEL`` (any case), else
    ``default``; ``default=None`` leaves the level unset, so the root logger's (``--log-level``) applies."""
    logger = logging.getLogger(name)
    level = os.getenv(LEVEL_ENV) or default
    if level:
        logger.setLevel(level.upper())
    return logger
