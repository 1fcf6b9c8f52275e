"""The recipes' ``verl.plugins`` entry point: registers masksearch's trainer mode and agent loop.

verl imports every module of the ``verl.plugins`` entry-point group at the end of its own
``__init__`` — in the driver, the TaskRunner and every Ray worker. The composition root (recipes)
is the only part that registers things into verl; ``masksearch.backends.plugin`` (the other entry
point) keeps only the generic CPU support and the verl patches.

* the ``masksearch`` V1 trainer mode (``masksearch.recipes.trainer``), registered when verl
  imports its V1 trainers;
* the ``masksearch_agent`` agent loop (``masksearch.env.agent_loop``), registered when verl imports
  its agent-loop module (the explicit route, ``agent_loop_config_path``, stays the primary one).

Both are deferred (:func:`masksearch.backends.import_hooks.when_imported`), so ``import verl``
stays fast. verl swallows exceptions raised here, so failures are logged at ERROR level and kept
in ``STATE``.
"""

from __future__ import annotations

import logging

from masksearch.backends.import_hooks import when_imported

logger = logging.getLogger(__name__)

STATE: dict[str, object] = {"loaded": False, "error": None}


def _register_trainer_mode(_module) -> None:
    import masksearch.recipes.trainer  # noqa: F401  (its import registers the trainer mode)


def _register_agent_loop(_module) -> None:
    # Makes `agent_name=masksearch_agent` work without `agent_loop_config_path`.
    import masksearch.env.agent_loop  # noqa: F401  (its import registers the agent loop)


def activate() -> None:
    when_imported("verl.trainer.ppo.v1", _register_trainer_mode)
    when_imported("verl.experimental.agent_loop.agent_loop", _register_agent_loop)
    STATE["loaded"] = True


try:
    activate()
except Exception as exc:  # verl would hide this at debug level
    STATE["error"] = repr(exc)
    logger.exception("masksearch recipes verl plugin failed to load; the masksearch trainer mode is missing")
