"""The hardware profiles composed and validated on CPU, through the typed path, without vLLM.

Issue 23 (deliverable 5): the GPU profile (``gpu_overrides``: vLLM rollout, FSDP2) over verl's
``ppo_trainer`` and our ``dapo_ramp.yaml`` was composed by no test, so a typo there would first show
in a user's GPU hour. Here it is composed with Hydra exactly as the entry composes it
(``recipe_overrides``), then checked by the code that checks it before Ray starts: our
``MaskSearchSettings`` (``load_settings``), verl's ``validate_config`` and verl's own dataclasses for
the rollout and the actor; the agent loop, the reward function and the curriculum are resolved too.
"""

from __future__ import annotations

import re
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from masksearch.recipes.dapo_ramp.main import CONFIG_DIR, recipe_overrides

# what a launch gives on top of the profile (examples/run_dapo_ramp.sh); nothing is read from disk
RUN = [
    "data.train_files=train.parquet",
    "data.val_files=val.parquet",
    "actor_rollout_ref.model.path=Qwen/Qwen2.5-3B-Instruct",
    "masksearch.env.retriever_url=http://127.0.0.1:8000",
]


def _composed(profile: str, extra: list[str] = (), *, misspell: tuple[str, str] | None = None):
    overrides = recipe_overrides([f"masksearch.profile={profile}", *RUN, *extra])
    if misspell:  # a typo inside the profile's own list
        overrides = [o.replace(*misspell) for o in overrides]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("dapo_ramp", overrides=overrides)


def _validated(config):
    """What the entry checks before Ray starts, plus the plugin points verl resolves later."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    from masksearch.recipes.settings import load_masksearch_settings

    settings = load_masksearch_settings(config)
    rollout = omega_conf_to_dataclass(config.actor_rollout_ref.rollout)  # verl.workers.config.RolloutConfig
    actor = omega_conf_to_dataclass(config.actor_rollout_ref.actor)  # FSDPActorConfig (its own checks)
    validate_config(
        config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )
    loops = OmegaConf.load(rollout.agent.agent_loop_config_path)
    agent = {entry.name: get_class(entry._target_) for entry in loops}
    reward_fn = get_custom_reward_fn(config)
    return settings, rollout, actor, agent, reward_fn


@pytest.fixture
def no_vllm(monkeypatch):
    """Any ``import vllm`` fails (where vLLM is installed too), and none may have happened."""
    assert "vllm" not in sys.modules
    monkeypatch.setitem(sys.modules, "vllm", None)
    yield
    assert sys.modules.get("vllm") is None


class TestProfiles:
    @pytest.mark.parametrize(
        ("profile", "rollout_name"),
        [
            ("gpu", "vllm"),  # the profile no CPU run exercises
            ("cpu", "hf"),  # the one every e2e test runs, composed the same way
        ],
    )
    def test_composes_and_validates(self, no_vllm, profile, rollout_name):
        from masksearch.curriculum.sampler import STRATEGIES
        from masksearch.env.agent_loop import AGENT_NAME, SearchAgentLoop

        settings, rollout, actor, agent, reward_fn = _validated(_composed(profile))
        assert settings.profile == profile and settings.env.retriever_url == "http://127.0.0.1:8000"
        assert settings.curriculum.strategy in STRATEGIES  # the recipe's curriculum is on and known
        assert rollout.name == rollout_name and actor.strategy == "fsdp2"
        assert agent[AGENT_NAME] is SearchAgentLoop
        assert callable(reward_fn) and reward_fn.func.__name__ == "_call_with_kwargs"  # verl's wrapper
        assert reward_fn.args[0].__name__ == "compute_score"

    def test_gpu_profile_values(self, no_vllm):
        config = _composed("gpu")
        assert config.actor_rollout_ref.rollout.gpu_memory_utilization == 0.6
        assert config.actor_rollout_ref.model.enable_gradient_checkpointing is True
        assert config.trainer.v1.trainer_mode == "masksearch"

    @pytest.mark.parametrize(
        ("extra", "misspell", "error"),
        [
            # a misspelled key inside gpu_overrides itself: Hydra finds no such key
            ([], ("gpu_memory_utilization", "gpu_memory_utilisation"), "gpu_memory_utilisation"),
            # the same typo forced in with ++: verl's RolloutConfig refuses it
            (["++actor_rollout_ref.rollout.gpu_memory_utilisation=0.6"], None, "gpu_memory_utilisation"),
            # a misspelled masksearch key: no such key in the composed defaults
            (["masksearch.env.topkk=5"], None, "topkk"),
            # forced in: load_settings names it and the valid keys
            (
                ["++masksearch.health.format_drop.patiance=2"],
                None,
                r"Unknown masksearch\.health\.format_drop key",
            ),
            # a misspelled value: the curriculum strategy
            (["masksearch.curriculum.strategy=stagd"], None, "Unknown curriculum strategy 'stagd'"),
        ],
    )
    def test_a_typo_fails_on_cpu(self, no_vllm, extra, misspell, error):
        with pytest.raises((HydraException, ValueError, TypeError, AssertionError)) as info:
            _validated(_composed("gpu", extra, misspell=misspell))
        assert re.search(error, str(info.value)), str(info.value)[-500:]
