"""The validation metrics of the one verl reward file (``eval_metrics``), the numbers ``masksearch eval`` reports."""

from __future__ import annotations

import importlib.util
import pickle

import pytest

import masksearch.rewards as rewards
from masksearch.rewards import RESULT_KEYS, compute_score
from masksearch.rewards.metrics import DEFAULT_METRICS, score_sample

SEARCH = "<think>look</think>\n<search>q</search>\n\n<information>Doc 1(Title: X) y</information>\n\n"


class TestVerlEntry:
    def test_training_keys_unchanged_plus_metrics(self):
        response = SEARCH + "<think>ok</think>\n<answer>the Ostra</answer>"
        out = compute_score(
            "nq",
            response,
            ["Ostra"],
            {"index": 1},
            answer_reward="em",
            eval_metrics=DEFAULT_METRICS,
            reward_router_address="x",
        )
        train = compute_score("nq", response, ["Ostra"], {"index": 1}, answer_reward="em")
        assert {k: out[k] for k in RESULT_KEYS} == train
        assert list(out) == [*RESULT_KEYS, *DEFAULT_METRICS]
        assert out["em"] == 1.0 and out["recall"] == 1.0  # "the" is an article: dropped by normalisation
        sample = score_sample("nq", response, ["Ostra"], {"index": 1})
        assert {k: out[k] for k in DEFAULT_METRICS} == {k: sample[k] for k in DEFAULT_METRICS}  # = eval

    def test_picklable_and_loadable_by_path(self):
        assert pickle.loads(pickle.dumps(compute_score)) is compute_score
        spec = importlib.util.spec_from_file_location("custom_module", rewards.verl_reward_path())
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # what verl's load_extern_object does
        out = module.compute_score("nq", "<think>t</think><answer>a</answer>", ["a"], eval_metrics=["f1"])
        assert out["f1"] == 1.0

    @pytest.mark.parametrize(
        ("eval_metrics", "extra"),
        [
            (None, []),  # default: the training keys only
            ((), []),  # empty: the same
            ("em", ["em"]),  # one name as a string (a Hydra scalar)
            (
                ["llm_judge"],
                ["judge"],
            ),  # short metric name of the judge (unreachable endpoint: recall fallback)
        ],
    )
    def test_metric_selection(self, eval_metrics, extra, monkeypatch):
        monkeypatch.setenv(
            "MASKSEARCH_JUDGE_URL", "http://127.0.0.1:1"
        )  # no URL at all is an error (issue 16)
        monkeypatch.setenv("MASKSEARCH_JUDGE_CACHE", "")
        out = compute_score("nq", "<think>t</think><answer>a</answer>", ["a"], eval_metrics=eval_metrics)
        assert list(out) == [*RESULT_KEYS, *extra]

    def test_unknown_metric_is_a_configuration_error(self):
        with pytest.raises(KeyError, match="Unknown reward"):
            compute_score("nq", "<think>t</think><answer>a</answer>", ["a"], eval_metrics=["nope"])

    def test_recipe_asks_for_the_eval_metrics(self):
        from pathlib import Path

        from omegaconf import OmegaConf

        import masksearch.recipes.dapo_ramp as recipe

        cfg = OmegaConf.load(Path(recipe.__file__).with_name("config") / "dapo_ramp.yaml")
        assert list(cfg.reward.custom_reward_function.reward_kwargs.eval_metrics) == list(DEFAULT_METRICS)
