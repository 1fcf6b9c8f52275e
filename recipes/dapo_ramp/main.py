"""Entry of the DAPO + RAMP recipe: profile, preflight, then verl's V1 trainer with our config.

``python -m masksearch.recipes.dapo_ramp [masksearch.profile=auto|cpu|gpu] <hydra overrides>``

Before Hydra runs, the entry
* picks the hardware profile (``auto``: ``cpu`` when the machine has no accelerator) and prepends its
  overrides (``masksearch.backends.cpu_profile``), so any override given on the command line wins;
* fills in the paths that live inside the installed package (the reward function file and the
  agent-loop YAML) unless given;
* runs the preflight checks (torch, verl version, model path) so mistakes fail before Ray starts.
Then it runs exactly what verl's ``main_ppo`` runs, with ``config/dapo_ramp.yaml`` as the config
(over the ``masksearch.*`` defaults of :class:`masksearch.recipes.settings.MaskSearchSettings`, which
it loads and checks before Ray starts).

Every exit writes ``<trainer.default_local_dir>/run_result.json`` (:class:`RunResult`; an error before
Hydra runs only when the folder was given as an override): ``status``
(``running`` while it runs, then ``ok``, ``error`` or ``health_stop``), the one-line ``error``, the
``budget`` fit and the last saved checkpoint; ``make learn`` reads that file, not the log.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra

from masksearch.backends.cpu_profile import cpu_overrides, gpu_overrides
from masksearch.core.atomic import atomic_write_json
from masksearch.core.errors import UserFacingError
from masksearch.recipes.budget import check_budget
from masksearch.recipes.preflight import override_value, run_preflight
from masksearch.recipes.settings import PROFILES, load_masksearch_settings, register_defaults

RESULT_FILE = "run_result.json"
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
register_defaults()  # the YAML's `masksearch_defaults` (here, so every composition of it finds them)


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


@dataclass
class RunResult:
    """``<folder>/run_result.json``, written atomically at every exit: how the run ended, for callers
    (``make learn``) that must not read logs. ``last_checkpoint_step`` is verl's
    ``latest_checkpointed_iteration.txt`` (``None`` before the first save)."""

    folder: Path | None  # None: no trainer.default_local_dir given and no config yet (nowhere to write)
    budget: dict[str, Any] | None = None

    def write(self, status: str, error: str | None = None) -> None:
        if self.folder is None:
            return
        tracker = self.folder / "latest_checkpointed_iteration.txt"
        step = int(tracker.read_text().strip()) if tracker.is_file() else None
        last = self.folder / f"global_step_{step}" if step is not None else None
        info = {"status": status, "error": error, "budget": self.budget, "last_checkpoint_step": step}
        atomic_write_json(
            self.folder / RESULT_FILE, {**info, "last_checkpoint": last and str(last)}, indent=2
        )

    @staticmethod
    def read(folder: str | os.PathLike[str]) -> dict[str, Any]:
        """The result a run left in ``folder`` (``{}`` when it wrote none)."""
        import json

        path = Path(folder) / RESULT_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    if any(cls.__name__ == "OutOfMemoryError" for cls in (*type(exc).__mro__, *type(cause).__mro__)):
        return _oom_line(str(cause))
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _oom_line(message: str) -> str:
    """Ray's OOM report (a page of text whose last line is a link) as the one line a user can act on."""
    import re

    usage = re.search(r"was ([\d.]+GB used / [\d.]+GB limit)", message)
    where = f" ({usage.group(1)})" if usage else ""
    return (
        f"Ray's memory monitor killed workers: the node ran out of memory{where}; lower the rollouts per "
        "step (data.train_batch_size x actor_rollout_ref.rollout.n), data.max_response_length or "
        "actor_rollout_ref.rollout.engine_kwargs.hf.prefix_cache_mb, or give the node more memory"
    )


def _train(config, result: RunResult) -> None:
    """The Hydra task: the same steps as verl.trainer.main_ppo.main, on our config."""
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    from masksearch.recipes.health_guard import HealthStop
    from masksearch.recipes.stall_guard import RolloutStalled
    from masksearch.recipes.trainer import RetrievalErrorAbort

    result.folder = Path(str(config.trainer.default_local_dir))
    result.write("running")
    try:
        load_masksearch_settings(config)  # every masksearch.* group checked before Ray starts
    except ValueError as exc:
        result.write("error", str(exc))
        print(f"masksearch: error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        auto_set_device(config)
        validate_config(
            config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
        )
        secrets = secret_env()
        if secrets:
            _init_ray(config, secrets)
        run_ppo(config, task_runner_class=TaskRunnerV1)
    except (
        HealthStop,
        RetrievalErrorAbort,
        RolloutStalled,
    ) as exc:  # Ray re-raises them as RayTaskError subclasses
        # the run decided to stop (watchdog `stop`, dead retriever): its line, not Ray's traceback.
        # Caught here, inside the Hydra task: Hydra turns exceptions that leave it into its own report.
        text = _one_line(exc)
        result.write("health_stop" if isinstance(exc, HealthStop) else "error", text)
        print(text if text.startswith("masksearch: ") else f"masksearch: error: {text}", file=sys.stderr)
        sys.exit(3)
    except BaseException as exc:  # a crash or an interrupt: recorded, then Hydra reports it as before
        result.write("error", _one_line(exc))
        raise
    result.write("ok")


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
    folder = override_value(user_overrides, "trainer.default_local_dir")
    result = RunResult(Path(folder) if folder else None)
    try:
        refuse_secret_overrides(user_overrides)
        overrides = recipe_overrides(user_overrides)
        run_preflight(overrides)
        fit = check_budget(overrides)  # one search per mask + the answer must fit (prints the fit)
    except UserFacingError as exc:
        result.write("error", str(exc))
        print(f"masksearch: error: {exc}", file=sys.stderr)
        return 2
    if fit is not None:
        result.budget = {
            "line": fit.line(),
            "fits": fit.fits,
            "needed": fit.needed(),
            **dataclasses.asdict(fit),
        }
    sys.argv = [sys.argv[0], *overrides]
    hydra.main(config_path=str(CONFIG_DIR), config_name="dapo_ramp", version_base=None)(
        lambda config: _train(config, result)
    )()
    return 0
