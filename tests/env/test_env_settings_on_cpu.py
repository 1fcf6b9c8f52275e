"""One definition of the search-env settings: RL's recipe, SFT synthesis, eval and chat share it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from masksearch.env.config import SearchEnvConfig

REPO = Path(__file__).resolve().parents[2]
RL_YAML = REPO / "recipes" / "dapo_ramp" / "config" / "dapo_ramp.yaml"
SHARED = ("max_turns", "topk", "max_obs_tokens")


def _rl_env() -> dict:
    """``masksearch.env`` of the RL recipe's composed config (its YAML over the settings dataclasses)."""
    from hydra import compose, initialize_config_dir

    from masksearch.recipes.dapo_ramp.main import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return OmegaConf.to_container(compose("dapo_ramp").masksearch.env)


def test_rl_recipe_values_equal_the_dataclass_defaults():
    rl = _rl_env()
    defaults = SearchEnvConfig()
    assert set(rl) <= {f.name for f in fields(SearchEnvConfig)}  # no stale key in the recipe
    assert {k: getattr(defaults, k) for k in rl} == rl
    assert (defaults.max_turns, defaults.topk, defaults.max_obs_tokens) == (4, 3, 256)
    assert "env" not in OmegaConf.load(RL_YAML).masksearch  # the YAML repeats no default


def _parse(argv: list[str]):
    from masksearch.cli.main import build_parser

    return build_parser().parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["chat", "--model", "m", "q"],  # masksearch chat
        ["eval", "--model", "m", "--data", "d.parquet", "--out", "o"],  # masksearch eval
        ["sft", "synthesize", "--data", "d.parquet", "--index", "i", "--out", "o"],  # SFT synthesis
    ],
)
def test_every_command_takes_the_same_defaults(argv, monkeypatch):
    from masksearch.env.cli_options import env_config_from_args

    monkeypatch.delenv("MASKSEARCH_INDEX_DIR", raising=False)
    monkeypatch.delenv("MASKSEARCH_RETRIEVER_URL", raising=False)
    args = _parse(argv)
    assert all(getattr(args, k) is None for k in SHARED)  # no command re-declares a default
    args.index = None
    config = env_config_from_args(args)
    assert {k: getattr(config, k) for k in SHARED} == {k: _rl_env()[k] for k in SHARED}


def test_sft_synthesis_defaults_are_the_env_ones():
    from masksearch.sft.synthesize import SynthesisConfig

    env = SynthesisConfig().env_config()
    assert {k: getattr(env, k) for k in SHARED} == {k: getattr(SearchEnvConfig(), k) for k in SHARED}


def test_flags_override_and_bad_values_are_one_line(tmp_path):
    from masksearch.core.errors import UserFacingError
    from masksearch.env.cli_options import env_config_from_args

    args = _parse(["chat", "--model", "m", "--index", str(tmp_path), "--max-turns", "2", "--topk", "5", "q"])
    config = env_config_from_args(args)
    assert (config.max_turns, config.topk, config.retriever_index) == (2, 5, str(tmp_path))
    for bad in (["--max-turns", "0"], ["--index", str(tmp_path / "missing")]):
        with pytest.raises(UserFacingError) as info:
            env_config_from_args(_parse(["chat", "--model", "m", *bad, "q"]))
        assert "\n" not in str(info.value)


def test_chat_resolves_checkpoint_paths_like_eval(tmp_path, capsys, real_index):
    """A local --model goes through the one resolver (HF folder or global_step_N); junk is exit 2."""
    from masksearch.cli.main import main

    junk = tmp_path / "global_step_3"
    junk.mkdir()
    rc = main(["chat", "--model", str(junk), "--index", str(real_index), "q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "global_step_3" in err
