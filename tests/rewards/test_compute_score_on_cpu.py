"""Tests for masksearch.rewards.compute_score and hybrid: verl contract, bad input, weights, loading."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch.rewards as rewards
from masksearch.rewards import RESULT_KEYS, HybridConfig, compute_score, task_kind

GOOD = (
    "<think>Need the city.</think><search>Eiffel Tower city</search>"
    "<information>Doc 1(Title: Eiffel Tower) The tower is in Paris. <answer>London</answer></information>"
    "<think>It is Paris.</think><answer>Paris</answer>"
)
RAMP_GOOD = "<think>t</think><answer>1. Paris\n2. 1889</answer>"
TEMPLATE = "The Eiffel Tower in [mask] was completed in [mask]."


def check_contract(out: dict) -> None:
    """verl builds arrays from the first sample's keys: same keys, scalar/str values, every path."""
    assert tuple(out) == RESULT_KEYS
    assert isinstance(out["score"], float) and isinstance(out["acc"], float)
    assert out["acc"] in (0.0, 1.0) and out["format_ok"] in (0.0, 1.0)
    assert 0.0 <= out["answer_score"] <= 1.0
    assert isinstance(out["num_searches"], int) and isinstance(out["pred"], str)
    assert isinstance(out["format_reason"], str) and out["format_reason"]


class TestContract:
    def test_good_qa(self):
        out = compute_score("hotpotqa", GOOD, np.array(["Paris"]), {"index": 3})
        check_contract(out)
        assert out == {
            "score": 1.0,
            "acc": 1.0,
            "answer_score": 1.0,
            "format_ok": 1.0,
            "format_reason": "ok",
            "num_searches": 1,
            "pred": "Paris",  # the <answer> inside <information> is ignored
        }

    def test_good_ramp(self):
        out = compute_score("ramp", RAMP_GOOD, ["Paris", "1889"], {"masked_text": TEMPLATE})
        check_contract(out)
        assert (out["score"], out["acc"]) == (1.0, 1.0)

    def test_ramp_partial_acc_zero(self):
        out = compute_score("ramp_wiki", "<think>t</think><answer>Paris\n1900</answer>", ["Paris", "1889"])
        assert (out["score"], out["acc"]) == (0.5, 0.0)

    def test_extra_kwargs_ignored(self):
        out = compute_score(
            data_source="nq",
            solution_str=GOOD,
            ground_truth=["Paris"],
            extra_info={"num_turns": 3, "rollout_reward_scores": {}},
            reward_router_address=None,
            reward_model_tokenizer=None,
            something_new=42,
        )
        assert out["score"] == 1.0

    @pytest.mark.parametrize(
        ("response", "ground_truth", "reason"),
        [
            ("", ["Paris"], "empty response"),  # empty response
            ("Paris", ["Paris"], "text outside tags"),  # no tags
            ("<think>t</think>", ["Paris"], "missing <answer>"),  # no answer tag
            (
                "<think>t</think><answer>a</answer><answer>Paris</answer>",
                ["Paris"],
                "more than one <answer>",
            ),  # two
            ("<think>t<answer>Paris</answer>", ["Paris"], "unclosed <think>"),  # unclosed tag
            ("<think><answer>Paris</answer></think>", ["Paris"], "nested <answer> in <think>"),  # nested
            (
                "<think>t</think><answer>Paris</answer>" + "x" * 100_000,
                ["Paris"],
                "text after </answer>",
            ),  # 100k
            ("<think>t</think><answer>Paris</answer>", None, "ok"),  # no gold at all
            ("<think>t</think><answer>Paris</answer>", [None, float("nan")], "ok"),  # unusable gold items
        ],
    )
    def test_bad_input_scores_zero(self, response, ground_truth, reason):
        for source in ("nq", "ramp"):
            out = compute_score(source, response, ground_truth)
            check_contract(out)
            assert out["score"] == 0.0 and out["acc"] == 0.0
            assert out["format_reason"] == reason
            assert out["format_ok"] == float(reason == "ok")

    @pytest.mark.parametrize(
        "ground_truth",
        [
            "Paris",
            ["Paris"],
            np.array(["Paris"]),
            np.array(["Paris", None], dtype=object),
            {"target": ["Paris"]},
        ],
        ids=["str", "list", "numpy", "numpy-object", "dict"],
    )
    def test_gold_shapes(self, ground_truth):
        assert compute_score("nq", GOOD, ground_truth)["score"] == 1.0

    @pytest.mark.parametrize("response", [None, 123, b"<think>"])
    def test_non_string_response(self, response):
        check_contract(compute_score("nq", response, ["Paris"]))

    def test_non_ascii(self):
        out = compute_score(
            "nq", "<think>思考</think><answer>北京市</answer>", ["北京市"], answer_reward="em"
        )
        assert out["score"] == 1.0

    def test_pred_truncated(self):
        out = compute_score("nq", "<think>t</think><answer>" + "word " * 10_000 + "</answer>", ["word"])
        assert len(out["pred"]) <= 1000


class TestHybrid:
    @pytest.mark.parametrize(
        ("kwargs", "response", "expected"),
        [
            ({}, GOOD, 1.0),  # default: answer score when format ok
            ({}, "<answer>Paris</answer>", 0.0),  # default gate: bad format -> 0
            ({"format_gate": False}, "<answer>Paris</answer>", 1.0),  # no gate: answer counts anyway
            ({"format_gate": "false"}, "<answer>Paris</answer>", 1.0),  # Hydra string bool
            ({"format_weight": 0.1}, GOOD, 1.1),  # bonus for format
            (
                {"format_weight": 0.1},
                GOOD.replace(">Paris</answer>", ">Rome</answer>"),
                0.1,
            ),  # right format, wrong
            ({"answer_weight": 0.9, "format_weight": 0.1}, GOOD, 1.0),  # convex combination
        ],
    )
    def test_weights(self, kwargs, response, expected):
        assert compute_score("nq", response, ["Paris"], **kwargs)["score"] == pytest.approx(expected)

    def test_acc_follows_gate(self):
        assert compute_score("nq", "<answer>Paris</answer>", ["Paris"])["acc"] == 0.0
        assert compute_score("nq", "<answer>Paris</answer>", ["Paris"], format_gate=False)["acc"] == 1.0

    @pytest.mark.parametrize(
        "bad", [{"answer_weight": -1}, {"format_weight": float("nan")}, {"answer_weight": 0}]
    )
    def test_bad_weights(self, bad):
        with pytest.raises(ValueError):
            HybridConfig(**bad)

    @pytest.mark.parametrize(
        ("name", "expected"),
        [("em", 0.0), ("f1", 2 / 3), ("recall", 1.0), ("recall_length_penalty", 1.0)],
    )
    def test_answer_reward_choice(self, name, expected):
        response = "<think>t</think><answer>Paris France</answer>"
        assert compute_score("nq", response, ["Paris"], answer_reward=name)["score"] == pytest.approx(
            expected
        )

    def test_answer_reward_options(self):
        response = "<think>t</think><answer>Paris France</answer>"
        out = compute_score(
            "nq",
            response,
            ["Paris"],
            answer_reward="recall_length_penalty",
            answer_reward_options={"max_ratio": 1},
        )
        assert out["score"] == pytest.approx(0.5)

    def test_unknown_reward_is_a_config_error(self):
        with pytest.raises(KeyError, match="Unknown reward 'nope'; registered"):
            compute_score("nq", GOOD, ["Paris"], answer_reward="nope")

    @pytest.mark.parametrize(
        ("source", "kind"),
        [
            ("ramp", "ramp"),
            ("RAMP", "ramp"),
            ("ramp_wiki", "ramp"),
            ("masksearch/ramp", "ramp"),
            ("hotpotqa", "qa"),
            ("trampoline", "qa"),
            (np.str_("ramp"), "ramp"),
            (None, "qa"),
        ],
    )
    def test_task_kind(self, source, kind):
        assert task_kind(source) == kind


class TestProperties:
    @settings(max_examples=150, deadline=None)
    @given(
        st.sampled_from(["nq", "ramp"]),
        st.one_of(
            st.text(max_size=200),
            st.lists(
                st.sampled_from(
                    [
                        "<think>",
                        "</think>",
                        "<answer>",
                        "</answer>",
                        "<search>",
                        "</search>",
                        "<information>",
                        "</information>",
                        "Paris",
                        "\n",
                        "1. ",
                        "[mask]",
                    ]
                ),
                max_size=20,
            ).map("".join),
        ),
        st.one_of(
            st.none(), st.text(max_size=20), st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=3)
        ),
        st.sampled_from(["em", "f1", "recall", "recall_length_penalty"]),
    )
    def test_never_raises_and_bounded(self, source, response, ground_truth, reward):
        out = compute_score(
            source, response, ground_truth, {"masked_text": "a [mask] b [mask]"}, answer_reward=reward
        )
        check_contract(out)
        assert 0.0 <= out["score"] <= 1.0


class TestVerlLoading:
    def test_entry_file_loads_by_path(self):
        """verl imports the reward file by path, under a synthetic module name."""
        from verl.utils.import_utils import load_extern_object

        fn = load_extern_object(module_path=rewards.verl_reward_path(), object_name="compute_score")
        assert fn is compute_score

    def test_through_verl_get_custom_reward_fn(self):
        """The override path users write: reward_kwargs reach compute_score, extra verl kwargs are ignored."""
        from omegaconf import OmegaConf
        from verl.trainer.ppo.reward import get_custom_reward_fn

        config = OmegaConf.create(
            {
                "reward": {
                    "custom_reward_function": {
                        "path": rewards.verl_reward_path(),
                        "name": "compute_score",
                        "reward_kwargs": {
                            "answer_reward": "recall_length_penalty",
                            "answer_reward_options": {"max_ratio": 1},
                        },
                    }
                }
            }
        )
        fn = get_custom_reward_fn(config)
        response = "<think>t</think><answer>Paris France</answer>"
        out = fn(
            data_source="nq",
            solution_str=response,
            ground_truth=np.array(["Paris"]),
            extra_info={},
            reward_router_address="x",
        )
        assert out["score"] == pytest.approx(0.5)
        pickle.dumps(fn)  # verl ships it to Ray reward workers

    def test_example_plugin_through_kwargs(self, monkeypatch):
        from pathlib import Path

        repo = Path(__file__).resolve().parents[2]
        spec = f"{repo}/examples/rewards/contains_answer.py:contains_answer"
        response = "<think>t</think><answer>the Eiffel Tower in Paris</answer>"
        assert compute_score("nq", response, ["eiffel tower"], answer_reward=spec)["score"] == 1.0
        assert compute_score("nq", response, ["eiffel tower"], answer_reward="em")["score"] == 0.0

    def test_module_file_exists(self):
        spec = importlib.util.spec_from_file_location("probe", rewards.verl_reward_path())
        assert spec is not None
