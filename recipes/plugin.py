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
stays fast; ``STATE`` records that the hooks are installed.
"""

from __future__ import annotations

from masksearch.backends.import_hooks import when_imported

STATE: dict[str, object] = {"loaded": False, "error": None}


def _register_trainer_mode(_module) -> None:
    import masksearch.recipes.trainer  # noqa: F401  (its import registers the trainer mode)


def _register_agent_loop(_module) -> None:
    # Makes `agent_name=masksearch_agent` work without `agent_loop_config_path`.
    import masksearch.env.agent_loop  # noqa: F401  (its import registers the agent loop)


def activate() -> None:
    """Install the two deferred registrations (nothing is imported now)."""
    for module, register in (
        ("verl.trainer.ppo.v1", _register_trainer_mode),
        ("verl.experimental.agent_loop.agent_loop", _register_agent_loop),
    ):
        when_imported(module, register)
    STATE["loaded"] = True


activate()  # only records callbacks; one that fails raises when verl imports that module (not hidden)
