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
)
# Secrets never go through Hydra (verl prints the config and its ray init kwargs; Hydra writes the
# overrides to .hydra/): the driver puts them into the job's runtime_env itself (see _init_ray).
# A forwarded URL that carries userinfo or a query string is treated as a secret too.
# An absolute path: relative ones make Hydra look for a Python package named ...dapo_ramp.config.
CONFIG_DIR = Path(__file__).resolve().parent / "config"


def _hydra_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def refuse_secret_overrides(overrides: Sequence[str]) -> None:
    """An ``api_key``/``token``-like override, or a URL with credentials, is a one-line error."""
    from masksearch.core.secrets import is_secret_name
    from masksearch.core.urls import has_credentials, public_url

    for item in overrides:
        name, sep, value = item.partition("=")
        name = name.lstrip("+~")
        if sep and is_secret_name(name):
            env = (
                "MASKSEARCH_RETRIEVER_TOKEN"
                if "retriever" in name or "search" in name
                else "MASKSEARCH_JUDGE_API_KEY"
            )
            raise UserFacingError(
                f"{name}: secrets are never passed as overrides (Hydra prints them and writes them to "
                f".hydra/); export {env} instead (the recipe hands it to the Ray workers itself)"
            )
        value = value.strip().strip("'\"")
        if sep and has_credentials(value):
            raise UserFacingError(
                f"{name}: a URL with credentials or a query string is not accepted as an override; "
                f"pass {public_url(value)} and put the key in the environment"
            )


def secret_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The secrets (and credential-carrying forwarded URLs) of the driver's environment, by name."""
    from masksearch.core.secrets import SECRET_ENV
    from masksearch.core.urls import has_credentials

    environ = dict(os.environ if environ is None else environ)
    found = {name: environ[name] for name in SECRET_ENV if environ.get(name)}
    for name in FORWARDED_ENV:
        value = environ.get(name, "")
        if has_credentials(value):
            found[name] = value
    return found


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

    # The one reward file verl loads; validation metrics come from reward_kwargs.eval_metrics.
    from masksearch.rewards import verl_reward_path

    profile = resolve_profile(user_overrides)
    on_cluster = bool(os.environ.get("RAY_ADDRESS"))  # started from the shell: see examples/multinode
    defaults = list(cpu_overrides(existing_cluster=on_cluster) if profile == "cpu" else gpu_overrides())
    defaults.append(f"masksearch.profile={profile}")
    secrets = secret_env()
    defaults += [
        # quoted: Ray accepts only string env values, and Hydra would read `1` as an int
        f"++ray_kwargs.ray_init.runtime_env.env_vars.{name}='{_hydra_quote(os.environ[name])}'"
        for name in FORWARDED_ENV
        if os.environ.get(name) and name not in secrets
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
    secrets = secret_env()
    if secrets:
        _init_ray(config, secrets)
    from masksearch.recipes.health_guard import HealthStop
    from masksearch.recipes.trainer import RetrievalErrorAbort

    try:
        run_ppo(config, task_runner_class=TaskRunnerV1)
    except (HealthStop, RetrievalErrorAbort) as exc:  # Ray re-raises them as RayTaskError subclasses
        # the run decided to stop (watchdog `stop`, dead retriever): its line, not Ray's traceback.
        # Caught here, inside the Hydra task: Hydra turns exceptions that leave it into its own report.
        text = str(getattr(exc, "cause", None) or exc).strip().splitlines()[-1]
        print(text if text.startswith("masksearch: ") else f"masksearch: error: {text}", file=sys.stderr)
        sys.exit(3)


def _init_ray(config, secrets: dict[str, str]) -> None:
    """``ray.init`` as verl's ``run_ppo`` does, plus the secrets in the runtime_env; printed without them.

    A cluster started with ``ray start`` does not inherit the driver's environment, so the keys
    travel in the job's runtime_env; run_ppo then finds Ray initialised and skips its own init
    (which would print every env var it forwards).
    """
    import ray
    from omegaconf import OmegaConf
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    if ray.is_initialized():
        return
    if config.actor_rollout_ref.rollout.full_determinism:  # what run_ppo sets before its init
        os.environ.update(
            VERL_FULL_DETERMINISM="1",
            VLLM_BATCH_INVARIANT="1",
            PYTHONHASHSEED=str(config.actor_rollout_ref.rollout.seed),
        )
    default_runtime_env = get_ppo_ray_runtime_env(config)
    ray_init_kwargs = config.ray_kwargs.get("ray_init", {})
    if config.transfer_queue.enable:
        default_runtime_env.setdefault("env_vars", {})["TRANSFER_QUEUE_ENABLE"] = "1"
    runtime_env = OmegaConf.merge(default_runtime_env, ray_init_kwargs.get("runtime_env", {}))
    kwargs = OmegaConf.to_container(OmegaConf.create({**ray_init_kwargs, "runtime_env": runtime_env}))
    print(f"ray init kwargs: {kwargs} (+ env_vars {sorted(secrets)} from the driver's environment)")
    kwargs["runtime_env"].setdefault("env_vars", {}).update(secrets)
    ray.init(**kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    user_overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        refuse_secret_overrides(user_overrides)
        overrides = recipe_overrides(user_overrides)
        run_preflight(overrides)
        check_budget(overrides)  # one search per mask + the answer must fit (prints the fit)
    except UserFacingError as exc:
        print(f"masksearch: error: {exc}", file=sys.stderr)
        return 2
    sys.argv = [sys.argv[0], *overrides]
    _run()
    return 0
