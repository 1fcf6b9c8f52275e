"""``MaskSearchSettings``: the ``masksearch.*`` groups as one typed composite (recipes/settings.py)."""

from __future__ import annotations

import dataclasses
import doctest

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from masksearch.curriculum.sampler import CurriculumSettings
from masksearch.env.config import SearchEnvConfig
from masksearch.recipes import settings as settings_module
from masksearch.recipes.dapo_ramp.main import CONFIG_DIR
from masksearch.recipes.health import HealthSettings, RuleSettings
from masksearch.recipes.settings import MaskSearchSettings, SamplerSettings, load_masksearch_settings


def _recipe(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("dapo_ramp", overrides=list(overrides))


class TestMaskSearchSettings:
    def test_doctests(self):
        result = doctest.testmod(settings_module)
        assert result.failed == 0 and result.attempted > 0

    def test_absent_group_gives_the_dataclass_defaults(self):
        assert load_masksearch_settings(OmegaConf.create({"data": {}})) == MaskSearchSettings()

    def test_recipe_yaml_holds_only_deltas(self):
        """The composed recipe equals the defaults except what its YAML lists (the curriculum)."""
        yaml = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "dapo_ramp.yaml").masksearch)
        assert yaml == {"curriculum": {"strategy": "staged"}}
        expected = MaskSearchSettings(curriculum=CurriculumSettings(strategy="staged"))
        assert load_masksearch_settings(_recipe()) == expected

    def test_rendered_overrides_compose_back_to_the_same_object(self):
        """``make learn`` hands its run a settings object as overrides: they must mean that object."""
        wanted = MaskSearchSettings(
            env=SearchEnvConfig(max_turns=5, topk=1, retriever_index="/idx"),
            curriculum=CurriculumSettings(strategy="none", width=0.5),
            sampler=SamplerSettings(poll_interval_s=0.5),
            health=dataclasses.replace(HealthSettings(), format_drop=RuleSettings(action="stop")),
        )
        assert load_masksearch_settings(_recipe(*wanted.overrides())) == wanted
        assert load_masksearch_settings(_recipe(*wanted.overrides("env"))).env == wanted.env

    @pytest.mark.parametrize(
        ("override", "message"),
        [
            (
                "++masksearch.sampler.poll_intervall_s=1",
                "Unknown masksearch.sampler key(s) ['poll_intervall_s']",
            ),
            (
                "masksearch.sampler.poll_interval_s=0",
                "masksearch.sampler: poll_interval_s must be > 0, got 0.0",
            ),
            (
                "masksearch.dynamic_sampling.on_exhausted=stop",
                "on_exhausted must be one of ('continue', 'error')",
            ),
            ("masksearch.profile=tpu", "masksearch.profile=tpu: choose one of auto, cpu, gpu"),
            ("masksearch.env.topk=many", "masksearch.env: topk must be an int >= 1, got 'many'"),
        ],
    )
    def test_bad_values_are_one_line_errors(self, override, message):
        with pytest.raises(ValueError) as info:
            load_masksearch_settings(_recipe(override))
        assert message in str(info.value) and "\n" not in str(info.value)

    def test_loaded_once_per_trainer(self):
        class Trainer:
            config = OmegaConf.create({"masksearch": {"sampler": {"poll_interval_s": 0.5}}})

        trainer = Trainer()
        first = settings_module.settings_of(trainer)
        trainer.config = None  # a second look does not read the config again
        assert settings_module.settings_of(trainer) is first and first.sampler.poll_interval_s == 0.5
