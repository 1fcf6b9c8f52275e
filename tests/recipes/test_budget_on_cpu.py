"""The budget fit of the RL recipe: one search per mask plus the answer must fit the response budget."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from masksearch.core.errors import UserFacingError
from masksearch.recipes.budget import (
    ANSWER_BASE_TOKENS,
    ANSWER_PER_MASK_TOKENS,
    PASSAGE_TOKENS,
    SEARCH_TURN_TOKENS,
    WRAPPER_TOKENS,
    budget_fit,
    check_budget,
    data_stats,
    max_fitting_masks,
)


def _fit(**kw):
    base = dict(
        max_response_length=1100, max_prompt_length=1024, max_turns=5, topk=1, max_obs_tokens=192, masks=4
    )
    return budget_fit(**{**base, **kw})


class TestBudgetFit:
    def test_arithmetic(self):
        fit = _fit()
        obs = min(192, PASSAGE_TOKENS + WRAPPER_TOKENS)
        assert fit.observation_tokens == obs
        assert (
            fit.needed() == 4 * (SEARCH_TURN_TOKENS + obs) + ANSWER_BASE_TOKENS + 4 * ANSWER_PER_MASK_TOKENS
        )
        assert fit.fits and "fits" in fit.line()

    @pytest.mark.parametrize(
        ("change", "problem"),
        [
            ({"max_response_length": 160}, "response tokens > 160"),  # the old demo budget
            ({"max_turns": 4}, "5 turns > max_turns=4"),  # 4 searches + the answer need 5 turns
            ({"prompt_tokens": 2000}, "max_prompt_length=1024"),  # prompts would be filtered out
        ],
    )
    def test_misfits_name_the_reason(self, change, problem):
        fit = _fit(**change)
        assert not fit.fits and any(problem in p for p in fit.problems()), fit.problems()
        assert "does NOT fit" in fit.line()

    def test_observation_capped_by_topk_passages(self):
        # three passages do not fit 96 tokens: the observation is cut to max_obs_tokens
        assert _fit(topk=3, max_obs_tokens=96).observation_tokens == 96
        assert _fit(topk=1, max_obs_tokens=4096).observation_tokens == PASSAGE_TOKENS + WRAPPER_TOKENS

    def test_max_fitting_masks(self):
        assert max_fitting_masks(_fit()) == 4
        assert max_fitting_masks(_fit(max_turns=3)) == 2
        assert max_fitting_masks(_fit(max_response_length=100)) == 0

    def test_zero_budget_is_an_error(self):
        with pytest.raises(UserFacingError, match="max_obs_tokens=0"):
            _fit(max_obs_tokens=0)


@pytest.fixture()
def train_file(tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": "x " * 10}], "extra_info": {"mask_num": n}} for n in (1, 3, 2)
    ]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


class TestCheckBudget:
    def test_data_stats_reads_mask_counts_and_prompt_length(self, train_file, embedded_tokenizer):
        masks, prompt = data_stats(train_file, embedded_tokenizer)
        assert masks == 3 and 10 < prompt < 60

    def test_fitting_config_prints_and_passes(self, train_file):
        lines = []
        overrides = [f"data.train_files={train_file}", "data.max_response_length=900", "masksearch.env.max_turns=4",
                     "masksearch.env.topk=1", "masksearch.env.max_obs_tokens=192"]  # fmt: skip
        fit = check_budget(overrides, environ={}, echo=lines.append)
        assert fit is not None and fit.fits and fit.masks == 3
        assert len(lines) == 1 and lines[0].startswith("budget: 3 mask(s)") and lines[0].endswith("fits")

    def test_nothing_fits_is_refused(self, train_file):
        overrides = [f"data.train_files={train_file}", "data.max_response_length=64"]
        with pytest.raises(UserFacingError, match=r"budget cannot fit.*max_response_length to >="):
            check_budget(overrides, environ={}, echo=lambda _: None)

    def test_larger_masks_misfit_warns_or_refuses_when_strict(self, train_file):
        overrides = [f"data.train_files={train_file}", "data.max_response_length=300",
                     "masksearch.env.topk=1", "masksearch.env.max_obs_tokens=192"]  # fmt: skip
        lines = []
        fit = check_budget(overrides, environ={}, echo=lines.append)
        assert fit is not None and not fit.fits and "only rows with up to 1 mask(s)" in lines[-1]
        with pytest.raises(UserFacingError, match="3 search"):
            check_budget(overrides, environ={"MASKSEARCH_BUDGET_CHECK": "strict"}, echo=lambda _: None)
        assert check_budget(overrides, environ={"MASKSEARCH_BUDGET_CHECK": "off"}) is None
        with pytest.raises(UserFacingError, match="choose one of"):
            check_budget(overrides, environ={"MASKSEARCH_BUDGET_CHECK": "maybe"})

    def test_recipe_refuses_with_one_line_and_exit_2(self, train_file, tiny_model_path):
        proc = subprocess.run(
            [sys.executable, "-m", "masksearch.recipes.dapo_ramp", "masksearch.profile=cpu",
             f"data.train_files={train_file}", f"data.val_files={train_file}", "data.max_response_length=64",
             f"actor_rollout_ref.model.path={tiny_model_path}"],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("masksearch: error:")]
        assert len(errors) == 1 and "budget cannot fit" in errors[0]
        assert "budget: 3 mask(s)" in proc.stdout
