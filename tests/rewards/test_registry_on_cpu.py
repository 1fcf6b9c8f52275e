"""Tests for masksearch.rewards.registry: built-ins, errors, specs, entry points, pickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import masksearch.rewards as rewards
from masksearch.rewards import registry
from masksearch.rewards.answer import RecallLengthPenalty
from masksearch.rewards.judge import LLMJudge

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "rewards" / "contains_answer.py"
BUILTINS = ["em", "f1", "recall", "recall_length_penalty", "llm_judge"]
# llm_judge needs a URL since issue 16 (without one it is a start-up error): an unreachable one
JUDGE_OPTS = {"url": "http://127.0.0.1:1", "cache_path": "", "max_retries": 0}


@pytest.fixture
def clean_registry(monkeypatch):
    """Registry changes made by a test are undone afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


class TestBuiltins:
    def test_registered(self):
        assert set(BUILTINS) <= set(rewards.registered())

    @pytest.mark.parametrize("name", BUILTINS)
    def test_get_returns_bounded_callable(self, name):
        fn = rewards.get(name, **(JUDGE_OPTS if name == "llm_judge" else {}))
        assert 0.0 <= fn("Paris", ["Paris"]) <= 1.0

    def test_factory_options(self):
        fn = rewards.get("recall_length_penalty", max_ratio=4)
        assert isinstance(fn, RecallLengthPenalty) and fn.max_ratio == 4.0

    def test_bad_factory_option(self):
        with pytest.raises(ValueError, match="max_ratio"):
            rewards.get("recall_length_penalty", max_ratio=-1)

    def test_options_to_plain_reward(self):
        with pytest.raises(ValueError, match="takes no options"):
            rewards.get("em", max_ratio=2)

    def test_unknown(self):
        with pytest.raises(KeyError) as err:
            rewards.get("bleu")
        assert str(err.value).strip('"') == f"Unknown reward 'bleu'; registered: {rewards.registered()}"


class TestRegister:
    def test_duplicate_rejected(self, clean_registry):
        with pytest.raises(ValueError, match="already registered"):
            clean_registry.register("em", lambda p, g: 1.0)

    def test_overwrite_and_new(self, clean_registry):
        clean_registry.register("always_one", lambda p, g: 1.0)
        assert rewards.get("always_one")("x", ["y"]) == 1.0
        clean_registry.register("always_one", lambda p, g: 0.0, overwrite=True)
        assert rewards.get("always_one")("x", ["y"]) == 0.0

    @pytest.mark.parametrize("name", ["", "  ", "a:b", None])
    def test_bad_names(self, clean_registry, name):
        with pytest.raises(ValueError):
            clean_registry.register(name, lambda p, g: 1.0)

    def test_not_callable(self, clean_registry):
        with pytest.raises(ValueError, match="callable"):
            clean_registry.register("x", 3)


class TestSpecs:
    def test_file_spec(self):
        fn = rewards.get(f"{EXAMPLE}:contains_answer")
        assert fn("It is the Eiffel Tower.", ["eiffel tower"]) == 1.0
        assert fn is rewards.get(f"{EXAMPLE}:contains_answer")  # module loaded once

    def test_module_spec(self):
        assert rewards.get("masksearch.rewards.answer:exact_match")("a Paris", ["paris"]) == 1.0

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            rewards.get(f"{tmp_path}/nope.py:fn")

    def test_missing_attr(self):
        with pytest.raises(AttributeError, match="has no attribute"):
            rewards.get(f"{EXAMPLE}:nope")

    def test_verl_pkg_spec(self):
        # verl's form of a module spec names the same object
        assert rewards.get("pkg://masksearch.rewards.answer:exact_match") is rewards.get(
            "masksearch.rewards.answer:exact_match"
        )

    def test_dataclass_in_file_builds_and_pickles(self, tmp_path):
        # why the file enters sys.modules before it runs (verl's load_module enters it after): a
        # dataclass with string annotations needs its module there, and so does pickling its instances
        path = tmp_path / "dc_reward.py"
        path.write_text(
            "from __future__ import annotations\n"
            "from dataclasses import dataclass\n"
            "@dataclass\n"
            "class Longer:\n"
            "    value: int = 1\n"
            "    def __call__(self, prediction: str, golds: list[str]) -> float:\n"
            "        return float(len(prediction) > self.value)\n"
        )
        fn = rewards.get(f"{path}:Longer", value=3)
        assert fn("abcd", ["x"]) == 1.0 and pickle.loads(pickle.dumps(fn)) == fn

    def test_broken_file_is_retried(self, tmp_path):
        # a file that fails to run is not left half-loaded: fixed, it loads on the next call
        path = tmp_path / "broken.py"
        path.write_text("raise RuntimeError('typo')\n")
        with pytest.raises(RuntimeError, match="typo"):
            rewards.get(f"{path}:fn")
        path.write_text("def fn(prediction, golds):\n    return 1.0\n")
        assert rewards.get(f"{path}:fn")("x", ["y"]) == 1.0

    def test_class_in_file_is_a_factory(self, tmp_path):
        path = tmp_path / "my_reward.py"
        path.write_text(
            "class Threshold:\n"
            "    __name__ = 'threshold'\n"
            "    def __init__(self, value=0.5):\n"
            "        self.value = value\n"
            "    def __call__(self, prediction, golds):\n"
            "        return float(len(prediction) > self.value)\n"
        )
        assert rewards.get(f"{path}:Threshold", value=3)("abcd", ["x"]) == 1.0


class TestEntryPoints:
    def test_entry_point_reward_is_loaded(self, clean_registry, monkeypatch):
        from importlib.metadata import EntryPoint

        eps = [
            EntryPoint("contains_pkg", "masksearch.rewards.answer:token_f1", registry.ENTRY_POINT_GROUP),
            EntryPoint(
                "em", "masksearch.rewards.answer:token_f1", registry.ENTRY_POINT_GROUP
            ),  # clash: ignored
            EntryPoint("broken", "no_such_module_xyz:fn", registry.ENTRY_POINT_GROUP),  # broken: skipped
        ]
        monkeypatch.setattr(
            registry, "entry_points", lambda group: eps if group == registry.ENTRY_POINT_GROUP else []
        )
        monkeypatch.setattr(registry, "_entry_points_loaded", False)
        assert rewards.get("contains_pkg")("Paris France", ["Paris"]) == pytest.approx(2 / 3)
        assert rewards.get("em")("Paris France", ["Paris"]) == 0.0  # the built-in kept
        assert "broken" not in rewards.registered()


class TestPickle:
    @pytest.mark.parametrize("name", BUILTINS)
    def test_builtins_pickle(self, name):
        fn = rewards.get(name, **(JUDGE_OPTS if name == "llm_judge" else {}))
        clone = pickle.loads(pickle.dumps(fn))
        assert clone("Paris", ["Paris"]) == fn("Paris", ["Paris"])

    def test_judge_pickles_with_state(self):
        judge = LLMJudge(url="http://127.0.0.1:9", cache_path="", timeout_s=0.2, max_retries=0)
        judge("x", ["y"])
        clone = pickle.loads(pickle.dumps(judge))
        assert clone.stats()["fallbacks"] == 1 and clone.url == judge.url
        assert "_api_key" in clone.__dict__  # key kept for the worker, but never in repr
        assert "api" not in repr(clone).lower()

    def test_compute_score_pickles(self):
        assert pickle.loads(pickle.dumps(rewards.compute_score)) is rewards.compute_score
