"""``masksearch.*``: the recipe's settings groups as one typed composite, loaded once per run.

Each group is the dataclass where it is used (the one definition of its keys and defaults):
``env`` :class:`~masksearch.env.config.SearchEnvConfig`, ``curriculum``
:class:`~masksearch.curriculum.sampler.CurriculumSettings`, ``sampler`` :class:`SamplerSettings`,
``dynamic_sampling`` :class:`~masksearch.recipes.dynamic_sampling.DynamicSamplingSettings`, ``health``
:class:`~masksearch.recipes.health.HealthSettings`; ``profile`` (``auto | cpu | gpu``) is read by the
entry before Hydra. The recipe YAML lists only what differs: :func:`register_defaults` stores the
defaults in Hydra's ConfigStore (``masksearch_defaults`` in the YAML's defaults list), so a plain
``masksearch.env.topk=5`` finds its key and a misspelled one is refused by Hydra;
:func:`load_masksearch_settings` checks the values (:func:`masksearch.core.settings.load_settings`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from masksearch.core.settings import load_settings
from masksearch.curriculum.sampler import CurriculumSettings
from masksearch.env.config import SearchEnvConfig
from masksearch.recipes.dynamic_sampling import DynamicSamplingSettings
from masksearch.recipes.health import HealthSettings

__all__ = ["PROFILES", "MaskSearchSettings", "SamplerSettings", "load_masksearch_settings", "settings_of"]

PROFILES = ("auto", "cpu", "gpu")
#: Name of the defaults node in Hydra's ConfigStore (the recipe YAML's defaults list names it).
DEFAULTS_NODE = "masksearch_defaults"


@dataclass(frozen=True)
class SamplerSettings:
    """``masksearch.sampler``.

    Attributes:
        poll_interval_s: how often verl's replay buffer looks for finished groups (verl's own is a
            fixed 2 s, which rounded every step's generation up to the next 2-s tick).
        stall_timeout_s: the run stops with one line when no rollout changes state for this long
            while some are running (a dead rollout worker; ``masksearch.recipes.stall_guard``); 0: off.
    """

    poll_interval_s: float = 0.25
    stall_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if not self.poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0, got {self.poll_interval_s!r}")
        if not self.stall_timeout_s >= 0:
            raise ValueError(f"stall_timeout_s must be >= 0 (0: off), got {self.stall_timeout_s!r}")


@dataclass(frozen=True)
class MaskSearchSettings:
    """Every ``masksearch.*`` group of the trainer config (module docstring)."""

    profile: str = "auto"
    env: SearchEnvConfig = field(default_factory=SearchEnvConfig)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    dynamic_sampling: DynamicSamplingSettings = field(default_factory=DynamicSamplingSettings)
    health: HealthSettings = field(default_factory=HealthSettings)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"masksearch.profile={self.profile}: choose one of {', '.join(PROFILES)}")

    def overrides(self, *groups: str) -> list[str]:
        """Hydra overrides (``masksearch.<group>.<key>=<value>``) of every setting of ``groups`` (all
        when none is named): a run built from this object, whatever the YAML says.

        >>> MaskSearchSettings(sampler=SamplerSettings(poll_interval_s=0.5)).overrides("sampler")
        ['masksearch.sampler.poll_interval_s=0.5', 'masksearch.sampler.stall_timeout_s=1800.0']
        """
        values = dataclasses.asdict(self)
        return _overrides("masksearch", {g: values[g] for g in groups or values})


def _overrides(prefix: str, values: dict[str, Any]) -> list[str]:
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _overrides(f"{prefix}.{key}", value)
        else:
            out.append(f"{prefix}.{key}={'null' if value is None else value}")
    return out


def load_masksearch_settings(config: Any) -> MaskSearchSettings:
    """``masksearch.*`` of a trainer config (defaults when absent); bad keys or values: one-line ``ValueError``."""
    from omegaconf import OmegaConf

    return load_settings(
        MaskSearchSettings, OmegaConf.select(config, "masksearch", default=None), "masksearch"
    )


def settings_of(trainer: Any) -> MaskSearchSettings:
    """The settings of ``trainer.config``, loaded on first use and kept on the trainer."""
    settings = trainer.__dict__.get("_masksearch_settings")
    if settings is None:
        settings = trainer._masksearch_settings = load_masksearch_settings(trainer.config)
    return settings


def register_defaults() -> None:
    """Store the defaults in Hydra's ConfigStore as :data:`DEFAULTS_NODE` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(
        name=DEFAULTS_NODE, node={"masksearch": dataclasses.asdict(MaskSearchSettings())}
    )
