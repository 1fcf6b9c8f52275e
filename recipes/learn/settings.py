"""The knobs of ``make learn``: environment variables, as in ``examples/run_dapo_ramp.sh``.

``LEARN_SCALE`` picks a preset (``tiny``: the CI plumbing test with the random tiny model;
``default``: SmolLM2-135M on 2 CPU cores, about 2.3 hours on the 2026-12-07 machine (session-7 stage times); ``full``: bigger runs on better
hardware); every knob below overrides its preset value. The search-environment settings
(``MAX_TURNS``, ``TOPK``, ``MAX_OBS_TOKENS``) are chosen once here and handed to every stage —
synthesis, evaluation and RL run the same env, so SFT trajectories are what RL rollouts look
like. ``full`` keeps :class:`~masksearch.env.config.SearchEnvConfig`'s defaults for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from masksearch.core.errors import UserFacingError
from masksearch.env.config import SearchEnvConfig

__all__ = ["SCALES", "LearnSettings", "parse_knob", "settings_from_env"]


@dataclass(frozen=True)
class LearnSettings:
    """Every knob (environment variable = upper-case field name)."""

    work_dir: str = "outputs/learn"
    model_path: str = ""  # empty: the embedded SmolLM2-135M-Instruct
    # data
    ramp_samples: int = 2000
    val_fraction: float = 0.11  # ~220 held-out rows of 2000: paired CIs need >= 200
    max_masks: int = 4
    corpus_limit: int = 0  # 0: the whole embedded corpus
    # env (one setting for every stage); 0 = SearchEnvConfig's default
    max_turns: int = 5
    topk: int = 1
    max_obs_tokens: int = 160
    max_response_length: int = 1024
    max_prompt_length: int = 1024
    # evaluation
    val_samples: int = 200
    # the base model never stops (every row decodes to the full budget) and scored 0 on every row of
    # the README runs: its row anchors base -> SFT on the first BASE_VAL_SAMPLES rows (0 = VAL_SAMPLES)
    base_val_samples: int = 100
    eval_batch: int = 50  # episodes decoded together: rows leave the batch when done
    fanout_samples: int = 20
    # SFT on the rules teacher
    # 256 rows x 64 steps (one epoch): val recall 57.1% vs 40.1% for 128 x 32, in about the same time
    # (one sequence per micro batch made SFT steps ~2.5x faster; issue 22)
    sft_rows: int = 256
    sft_steps: int = 64  # one epoch of sft_rows at sft_batch
    sft_batch: int = 4
    sft_micro_batch: int = 1
    sft_lr: float = 5e-5
    # self-evolve
    evolve_rounds: int = 1  # 0: no self-evolve stage (with RL_FROM=sft; ~30 min less on 2 cores)
    evolve_prompts: int = 16
    # 2 samples at T 0.7 kept 4 of 32 in the README run of 2026-12-01: more samples, a cooler teacher
    evolve_samples: int = 4
    evolve_temperature: float = 0.5
    evolve_steps: int = 6
    evolve_from: str = "sft"  # sft: the round's student continues from the SFT model; base: from scratch
    # RL, from benchmarks/rl_sweep.py (README): from the 256 x 64 SFT, 8 x 4 prompts at lr 1e-5 with every
    # batch spanning 1-4 masks (balanced) and rollouts at T 0.7 gained +3.2 (CI [-0.4, 6.8]); linear -9.3,
    # verl's random draw 0.0 at T 1.0 (4 x 2 at lr 1e-6 moved nothing)
    rl_steps: int = 8
    rl_batch: int = 4
    group_size: int = 4
    rl_lr: float = 1e-5
    rl_gen_batches: int = 1  # DAPO dynamic sampling: generation batches a step may draw (1 = off)
    format_weight: float = 0.1
    # rollout temperature: at 1.0 the 135M policy's rollouts scored far below its greedy answers (3- and
    # 4-mask groups all 0); at 0.7 they score near greedy, so the group advantages rank what greedy does
    rl_temperature: float = 0.7
    curriculum: str = "balanced"
    rl_from: str = "sft"  # sft | evolve: which checkpoint RL starts from (the sweep measured from SFT)
    scale: str = "default"

    def env_config(self) -> SearchEnvConfig:
        given = {"max_turns": self.max_turns, "topk": self.topk, "max_obs_tokens": self.max_obs_tokens}
        return SearchEnvConfig(**{k: v for k, v in given.items() if v})

    @property
    def root(self) -> Path:
        return Path(self.work_dir).resolve()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: Presets; a knob set in the environment wins over its preset.
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {
        "ramp_samples": 60, "val_fraction": 0.2, "corpus_limit": 400, "max_turns": 2, "max_masks": 1,
        "max_obs_tokens": 160, "max_response_length": 320, "max_prompt_length": 1024, "val_samples": 4, "base_val_samples": 0,
        "eval_batch": 4, "fanout_samples": 2, "sft_rows": 6, "sft_steps": 1, "sft_batch": 2,
        "sft_micro_batch": 1, "evolve_prompts": 2, "evolve_samples": 1, "evolve_steps": 1,
        "rl_steps": 1, "rl_batch": 2, "group_size": 2,
    },
    "default": {},
    "full": {
        "ramp_samples": 20000, "val_fraction": 0.02, "max_turns": 5, "topk": 0, "max_obs_tokens": 0,
        "max_response_length": 3072, "val_samples": 400, "base_val_samples": 0, "eval_batch": 32, "fanout_samples": 200,
        "sft_rows": 4000, "sft_steps": 500, "sft_batch": 16, "sft_micro_batch": 2, "evolve_prompts": 2000,
        "evolve_samples": 4, "evolve_steps": 500, "rl_steps": 200, "rl_batch": 32, "group_size": 8, "rl_lr": 1e-6,
        "rl_temperature": 1.0, "curriculum": "staged", "rl_from": "evolve",  # the paper's shape; not measured here
    },
}  # fmt: skip


def _parse(kind: type, name: str, raw: str) -> Any:
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise UserFacingError(
            f"{name}={raw!r}: expected {'an integer' if kind is int else 'a number'}"
        ) from None
    return raw


def parse_knob(field: str, raw: str) -> Any:
    """The typed value of the knob ``field`` (a :class:`LearnSettings` field) read from ``raw``;
    a bad number is the same one-line error ``make learn`` gives for its environment variable."""
    return _parse(type(getattr(LearnSettings(), field)), field.upper(), raw)


def settings_from_env(environ: Mapping[str, str] | None = None) -> LearnSettings:
    """``LearnSettings`` from ``LEARN_SCALE`` and the knobs set in ``environ``.

    Raises:
        UserFacingError: an unknown scale or a knob that does not parse.
    """
    env = os.environ if environ is None else environ
    scale = env.get("LEARN_SCALE", "default").strip() or "default"
    if scale not in SCALES:
        raise UserFacingError(f"LEARN_SCALE={scale}: choose one of {', '.join(SCALES)}")
    settings = replace(LearnSettings(), scale=scale, **SCALES[scale])
    changes = {}
    for f in fields(LearnSettings):
        raw = env.get(f.name.upper())
        if raw is not None and raw != "" and f.name != "scale":
            kind = type(getattr(settings, f.name))
            changes[f.name] = _parse(kind, f.name.upper(), raw)
    settings = replace(settings, **changes)
    if settings.rl_from not in ("evolve", "sft"):
        raise UserFacingError(f"RL_FROM={settings.rl_from}: choose evolve or sft")
    if settings.evolve_rounds < 0 or (settings.evolve_rounds == 0 and settings.rl_from == "evolve"):
        raise UserFacingError(
            f"EVOLVE_ROUNDS={settings.evolve_rounds}: 0 skips self-evolve (RL then starts from SFT: "
            "RL_FROM=sft), 1 or more runs that many rounds"
        )
    if settings.evolve_from not in ("sft", "base"):
        raise UserFacingError(f"EVOLVE_FROM={settings.evolve_from}: choose sft or base")
    if settings.val_samples < 1 or settings.sft_steps < 1 or settings.rl_steps < 1:
        raise UserFacingError("VAL_SAMPLES, SFT_STEPS and RL_STEPS must be >= 1")
    try:
        settings.env_config()
    except ValueError as exc:
        raise UserFacingError(f"env settings: {exc}") from None
    return settings
