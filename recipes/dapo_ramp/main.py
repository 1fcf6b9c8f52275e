"""Entry of the DAPO + RAMP recipe: profile, preflight, then verl's V1 trainer with our config.

``python -m masksearch.recipes.dapo_ramp [masksearch.profile=auto|cpu|gpu] <hydra overrides>``

Before Hydra runs, the entry
* picks the hardware profile (``auto``: ``cpu`` when the machine has no accelerator) and prepends its
  overrides (``masksearch.backends.cpu_profile``), so any override given on the command line wins;
* fills in the paths that live inside the installed package (the reward function file and the
  agent-loop YAML) unless given;
* runs the preflight checks (torch, verl version, model path) so mistakes fail before Ray starts.
Then it runs exactly what verl's ``main_ppo`` runs, with ``config/dapo_ramp.yaml`` as the config.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra

from masksearch.backends.cpu_profile import cpu_overrides, gpu_overrides
from masksearch.core.errors import UserFacingError
from masksearch.recipes.budget import check_budget
from masksearch.recipes.preflight import override_value, run_preflight

PROFILES = ("auto", "cpu", "gpu")
# Environment that must reach the Ray workers. A cluster started with `ray start` does not inherit the
# driver's environment, so these travel in the job's runtime_env (verl merges it into its own).
FORWARDED_ENV = (
    "TENSORBOARD_DIR",
    "VERL_FILE_LOGGER_PATH",
    "VERL_FILE_LOGGER_ROOT",
    "HF_HUB_OFFLINE",
    "MASKSEARCH_CACHE",
    "MASKSEARCH_DEVICE",
    "MASKSEARCH_INDEX_DIR",
    "MASKSEARCH_RETRIEVER_URL",
    "MASKSEARCH_JUDGE_URL",
    "MASKSEARCH_JUDGE_MODEL",
    "MASKSEARCH_JUDGE_API_KEY",
)
# An absolute path: relative ones make Hydra look for a Python package named ...dapo_ramp.config.
CONFIG_DIR = Path(__file__).resolve().parent / "config"


def _hydra_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def resolve_profile(overrides: Sequence[str]) -> str:
    profile = override_value(overrides, "masksearch.profile") or "auto"
    if profile not in PROFILES:
        raise UserFacingError(f"masksearch.profile={profile}: choose one of {', '.join(PROFILES)}")
    if profile == "auto":
        from masksearch.backends.plugin import accelerator_present

        profile = "gpu" if accelerator_present() else "cpu"
    return profile


def recipe_overrides(user_overrides: Sequence[str]) -> list[str]:
    """Profile and package-path overrides first, the user's last (Hydra applies them in order)."""
    from masksearch.env.agent_loop import agent_loop_config_path
    from masksearch.rewards import verl_reward_path  # the one reward file (eval metrics: reward_kwargs.eval_metrics)

    profile = resolve_profile(user_overrides)
    on_cluster = bool(os.environ.get("RAY_ADDRESS"))  # started from the shell: see examples/multinode
    defaults = list(cpu_overrides(existing_cluster=on_cluster) if profile == "cpu" else gpu_overrides())
    defaults.append(f"masksearch.profile={profile}")
    defaults += [
        # quoted: Ray accepts only string env values, and Hydra would read `1` as an int
        f"++ray_kwargs.ray_init.runtime_env.env_vars.{name}='{_hydra_quote(os.environ[name])}'"
        for name in FORWARDED_ENV
        if os.environ.get(name)
    ]
    if override_value(user_overrides, "reward.custom_reward_function.path") is None:
        defaults.append(f"reward.custom_reward_function.path={verl_reward_path()}")
    if override_value(user_overrides, "actor_rollout_ref.rollout.agent.agent_loop_config_path") is None:
        defaults.append(f"actor_rollout_ref.rollout.agent.agent_loop_config_path={agent_loop_config_path()}")
    return defaults + [o for o in user_overrides if not o.startswith("masksearch.profile=")]


@hydra.main(config_path=str(CONFIG_DIR), config_name="dapo_ramp", version_base=None)
def _run(config) -> None:
    # the same steps as verl.trainer.main_ppo.main, on our config
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    validate_config(
        config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )
    run_ppo(config, task_runner_class=TaskRunnerV1)


def main(argv: Sequence[str] | None = None) -> int:
    user_overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        overrides = recipe_overrides(user_overrides)
        run_preflight(overrides)
        check_budget(overrides)  # one search per mask + the answer must fit (prints the fit)
    except UserFacingError as exc:
        print(f"masksearch: error: {exc}", file=sys.stderr)
        return 2
    sys.argv = [sys.argv[0], *overrides]
    _run()
    return 0
