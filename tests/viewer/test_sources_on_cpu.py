"""Reading eval runs, verl dumps, SFT synthesis and learning reports into viewer samples."""

from __future__ import annotations

import json

import pytest

from masksearch.core.errors import UserFacingError
from masksearch.viewer.sources import REWARD_KEYS, discover, load_sources, split_documents


class TestDiscover:
    def test_finds_every_kind_below_a_folder(self, toy, tmp_path):
        toy.write_eval_run(tmp_path / "evals" / "base", toy.eval_records(2))
        toy.write_verl_dump(tmp_path / "demo" / "rollouts")
        toy.write_sft_run(tmp_path / "sft" / "synth")
        toy.write_learn_report(tmp_path / "learn")
        kinds = sorted(s.kind for s in discover([tmp_path]))
        assert kinds == ["eval", "learn", "sft", "verl"]

    @pytest.mark.parametrize(
        "name, kind",
        [
            ("trajectories.jsonl", "eval"),  # a file names its folder
            ("kept.jsonl", "sft"),
            ("3.jsonl", "verl"),
        ],
    )
    def test_a_file_names_its_folder(self, tmp_path, name, kind):
        (tmp_path / name).write_text("{}\n")
        (src,) = discover([tmp_path / name])
        assert src.kind == kind and src.path == tmp_path

    def test_missing_path_is_a_user_error(self, tmp_path):
        with pytest.raises(UserFacingError, match="no such file"):
            discover([tmp_path / "nope"])

    def test_folder_without_sources_is_a_user_error(self, tmp_path):
        (tmp_path / "notes.txt").write_text("hi")
        with pytest.raises(UserFacingError, match="nothing to view"):
            discover([tmp_path])

    def test_sft_report_json_is_not_a_learning_report(self, toy, tmp_path):
        toy.write_sft_run(tmp_path)  # has report.json without "stages"
        assert [s.kind for s in discover([tmp_path])] == ["sft"]


class TestEval:
    def test_fields_rewards_and_flags(self, toy, tmp_path):
        toy.write_eval_run(tmp_path / "run", toy.eval_records(6))
        loaded = load_sources([tmp_path / "run"])
        samples = loaded.samples
        assert [s.key for s in samples] == list(range(6))
        for s in samples:
            assert s.kind == "eval" and s.stats["num_searches"] == 1
            assert set(REWARD_KEYS) <= set(s.rewards) and {"em", "f1", "recall"} <= set(s.rewards)
            kinds = [b[0] for b in s.blocks]
            assert kinds == ["think", "search", "information", "think", "answer"]
            docs = s.blocks[2][3]
            assert [d[0] for d in docs] == [1, 2] and docs[1][1] == "Other"
            assert s.gold_in_docs  # every toy observation holds the gold
        # every third answer is wrong although the gold was retrieved (i = 0 and 3)
        assert [s.missed for s in samples] == [True, False, False, True, False, False]
        assert samples[1].rewards["acc"] == 1.0 and samples[1].rewards["format_reason"] == "ok"
        ramp = samples[2]
        assert ramp.data_source == "ramp" and ramp.golds == [["Marrowgate"]]
        assert "results" in loaded.runs[samples[0].run]

    def test_two_span_ramp_golds_are_groups(self, toy, tmp_path):
        toy.write_eval_run(tmp_path, toy.eval_records(1, wrong_every=0))
        (s,) = load_sources([tmp_path]).samples
        assert s.golds == [["Elena Marchetti"], ["1921"]] and s.rewards["acc"] == 1.0

    def test_unreadable_lines_are_skipped_and_counted(self, toy, tmp_path):
        toy.write_eval_run(tmp_path, toy.eval_records(2))
        with (tmp_path / "trajectories.jsonl").open("a") as fh:
            fh.write('{"id": "torn", "traj\n[1, 2]\n')
        loaded = load_sources([tmp_path])
        assert len(loaded.samples) == 2
        assert loaded.skipped == {
            "trajectories.jsonl: unreadable line": 1,
            "trajectories.jsonl: not an object": 1,
        }

    def test_failed_sample_without_trajectory(self, tmp_path):
        rec = {"id": "x:1", "data_source": "toyqa", "question": "Q?", "golds": ["a"], "answer": None,
               "scores": {"em": 0.0}, "stats": {}, "stop_reason": "error", "error": "generation: boom", "trajectory": None}  # fmt: skip
        (tmp_path / "trajectories.jsonl").write_text(json.dumps(rec) + "\n")
        (s,) = load_sources([tmp_path]).samples
        assert (
            s.blocks == []
            and s.error == "generation: boom"
            and s.rewards["format_reason"] == "empty response"
        )
        assert s.prompt == [{"role": "user", "content": "Q?"}]


class TestVerl:
    def test_rollout_dump_rescored_and_followed_across_steps(self, toy, tmp_path):
        toy.write_verl_dump(tmp_path / "rollouts", steps=3, prompts=2, n=2)
        samples = load_sources([tmp_path / "rollouts"]).samples
        assert len(samples) == 12 and {s.kind for s in samples} == {"rollout"}
        assert sorted({s.step for s in samples}) == [1, 2, 3]
        assert {s.rewards_source for s in samples} == {"recomputed"} and {
            s.stats_source for s in samples
        } == {"derived"}
        assert len({s.group for s in samples}) == 2  # two prompts, followed over three steps
        right = [s for s in samples if s.rewards["score"] == 1.0]
        assert right and all(s.rewards["acc"] == 1.0 and s.data_source == "ramp" for s in right)
        assert all(s.stats["num_searches"] == 1 and s.stats["num_turns"] == 2 for s in samples)
        assert [m["role"] for m in samples[0].prompt] == ["system", "user"]  # decoded chat split back
        assert samples[0].prompt[1]["content"].startswith("Title: Zorvath Bridge\nPassage: ")

    def test_validation_dump_keeps_logged_reward_parts(self, toy, tmp_path):
        toy.write_verl_dump(tmp_path / "validation", steps=1, validation=True)
        samples = load_sources([tmp_path / "validation"]).samples
        assert {s.kind for s in samples} == {"validation"} and {s.rewards_source for s in samples} == {
            "source"
        }


class TestSftAndLearn:
    def test_kept_and_rejected_with_reasons(self, toy, tmp_path):
        toy.write_sft_run(tmp_path)
        loaded = load_sources([tmp_path])
        kept, rejected = loaded.samples
        assert (kept.status, kept.reason, kept.rewards["acc"]) == ("kept", "ok", 1.0)
        assert (rejected.status, rejected.reason) == ("rejected", "missing <think> at start")
        assert rejected.rewards["format_ok"] == 0.0
        assert loaded.runs[kept.run]["report"]["kept_share"] == 0.5

    def test_learning_report_is_kept_as_read(self, toy, tmp_path):
        toy.write_learn_report(tmp_path)
        loaded = load_sources([tmp_path])
        assert loaded.samples == [] and loaded.reports[0].data["stages"][1]["name"] == "sft"


@pytest.mark.parametrize(
    "text, docs",
    [
        ("Doc 1(Title: A) x\nDoc 2(Title: B) y\n", [[1, "A", "x"], [2, "B", "y"]]),  # search tool's format
        ("Search failed: timeout after 10s", []),  # retrieval error: no documents
        ("Doc 1(Title: Truncated", [[1, "Truncated", ""]]),  # cut by max_obs_tokens
        ("", []),  # empty observation
    ],
)
def test_split_documents(text, docs):
    assert split_documents(text) == docs


class TestVerlScoreParts:
    """Issue 21: a DAPO rollout showed score -1 with every reward part 0 and no word of the overlong
    penalty. The parts now add up to the score, or say what the dump leaves unexplained."""

    @pytest.mark.parametrize(
        "case, kwargs, parts",
        [
            # verl 0.9.1 dumps the reward's extra info: the row's score is the reward function's,
            # overlong_reward the dapo penalty (log=True)
            ("rollout, penalty logged", {}, ["reward_fn_score", "overlong_reward"]),
            # validation dumps add verl's own total as `reward`
            ("validation, penalty logged", {"validation": True}, ["reward_fn_score", "overlong_reward"]),
            # no extra info in the dump: verl's score (-1) against the recomputed reward (0)
            ("rollout, no reward extras", {"extras": False}, ["reward_fn_score", "unexplained"]),
            # overlong_buffer_cfg.log=false: only validation's `reward` shows the gap
            ("validation, penalty not logged", {"validation": True, "log": False}, ["reward_fn_score", "unexplained"]),
        ],
    )  # fmt: skip
    def test_parts_add_up_to_the_score(self, toy, tmp_path, case, kwargs, parts):
        folder = tmp_path / ("validation" if kwargs.get("validation") else "rollouts")
        # a wrong answer at the end of the budget (the row), one half into the buffer, one short
        expected = toy.write_dapo_dump(folder, [256, 192, 100], right=[False, True, True], **kwargs)
        long_wrong, half, short = load_sources([folder]).samples
        assert [e["overlong"] for e in expected] == [-1.0, -0.5, 0.0]
        assert long_wrong.rewards["score"] == pytest.approx(-1.0)  # what verl trained on
        assert long_wrong.score_parts == parts, case
        assert long_wrong.rewards["reward_fn_score"] == 0.0 and long_wrong.rewards["acc"] == 0.0
        assert long_wrong.rewards[parts[1]] == pytest.approx(-1.0)
        for sample, exp in zip((long_wrong, half, short), expected, strict=True):
            assert sample.rewards["score"] == pytest.approx(exp["reward"])
            if sample.score_parts:
                total = sum(sample.rewards[k] for k in sample.score_parts)
                assert total == pytest.approx(sample.rewards["score"])
        assert half.rewards["score"] == pytest.approx(0.5) and half.rewards["reward_fn_score"] == 1.0
        assert long_wrong.to_json()["score_parts"] == parts
        if kwargs.get("extras", True):
            assert long_wrong.rewards_source == "source"
        if kwargs.get("log", True) and kwargs.get("extras", True):
            assert long_wrong.rewards["overlong"] is True and short.rewards["overlong"] is False
            assert short.score_parts == ["reward_fn_score", "overlong_reward"]  # a zero penalty is shown too

    def test_penalty_not_logged_in_rollouts_leaves_the_reward_function_score(self, toy, tmp_path):
        """Without overlong_buffer_cfg.log a rollout row carries nothing of the penalty (verl wrote
        the reward function's score over its own): the viewer shows that score, no parts."""
        toy.write_dapo_dump(tmp_path / "rollouts", [256], right=[True], log=False)
        (s,) = load_sources([tmp_path / "rollouts"]).samples
        assert s.rewards["score"] == 1.0 and s.score_parts == [] and "overlong_reward" not in s.rewards

    def test_plain_dump_has_no_parts(self, toy, tmp_path):
        toy.write_verl_dump(tmp_path / "rollouts", steps=1)  # score equals the recomputed reward
        assert all(s.score_parts == [] for s in load_sources([tmp_path / "rollouts"]).samples)


def test_verl_still_writes_extras_over_its_columns():
    """The fixture's row shape (conftest.verl_generation_rows) is verl's: read its source, no import."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("verl")
    assert spec is not None and spec.origin
    source = (Path(spec.origin).parent / "trainer" / "ppo" / "ray_trainer.py").read_text(encoding="utf-8")
    body = source[source.index("def _write_generations(") :][:1500]
    assert '"score": scores,' in body
    assert "for k, v in reward_extra_infos_dict.items():" in body and "base_data[k] = v" in body
    dapo = Path(spec.origin).parent / "experimental" / "reward_loop" / "reward_manager" / "dapo.py"
    text = dapo.read_text(encoding="utf-8")
    assert (
        'reward_extra_info["overlong_reward"] = overlong_reward' in text
        and "reward += overlong_reward" in text
    )
