"""Secrets never pass through Hydra overrides, printed configs or logs (issue 16, item C)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from masksearch.core.errors import UserFacingError
from masksearch.recipes.dapo_ramp.main import recipe_overrides, refuse_secret_overrides, secret_env

CANARY = "sk-canary-7f3a9c"


class TestOverrides:
    @pytest.mark.parametrize(
        ("override", "env_var"),
        [
            (f"+reward.reward_kwargs.answer_reward_options.api_key={CANARY}", "MASKSEARCH_JUDGE_API_KEY"),
            (f"++judge.apikey={CANARY}", "MASKSEARCH_JUDGE_API_KEY"),  # spelled without underscore
            (f"+masksearch.env.retriever_token={CANARY}", "MASKSEARCH_RETRIEVER_TOKEN"),
        ],
    )
    def test_api_key_like_override_is_refused_naming_the_env_var(self, override, env_var):
        with pytest.raises(UserFacingError, match=env_var) as info:
            refuse_secret_overrides(["data.train_batch_size=4", override])
        assert CANARY not in str(info.value)

    def test_url_with_credentials_is_refused_without_echoing_them(self):
        with pytest.raises(UserFacingError, match=r"http://h:1/v1") as info:
            refuse_secret_overrides([f"masksearch.env.retriever_url=http://me:{CANARY}@h:1/v1"])
        assert CANARY not in str(info.value)

    @pytest.mark.parametrize(
        "override",
        [
            "actor_rollout_ref.rollout.response_length=8",
            "data.max_prompt_length=512",
            "+x.pad_token=<pad>",  # "token" inside a longer name is not a secret
            "masksearch.env.retriever_url=http://Host:8000",
        ],
    )
    def test_ordinary_overrides_pass(self, override):
        refuse_secret_overrides([override])

    def test_judge_key_is_not_forwarded_as_an_override(self, monkeypatch):
        monkeypatch.setenv("MASKSEARCH_JUDGE_API_KEY", CANARY)
        monkeypatch.setenv("MASKSEARCH_JUDGE_URL", f"http://u:{CANARY}x@judge:9/v1")
        monkeypatch.setenv("MASKSEARCH_JUDGE_MODEL", "qwen")
        overrides = recipe_overrides(["masksearch.profile=cpu"])
        assert not any(CANARY in o for o in overrides)
        assert any("MASKSEARCH_JUDGE_MODEL='qwen'" in o for o in overrides)  # ordinary values still go
        assert secret_env() == {
            "MASKSEARCH_JUDGE_API_KEY": CANARY,
            "MASKSEARCH_JUDGE_URL": f"http://u:{CANARY}x@judge:9/v1",
        }

    def test_entry_refuses_before_anything_else(self):
        proc = subprocess.run(
            [sys.executable, "-m", "masksearch.recipes.dapo_ramp", f"+judge.api_key={CANARY}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 2 and "MASKSEARCH_JUDGE_API_KEY" in proc.stderr
        assert CANARY not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_reward_resolution_log_has_no_key(caplog):
    from masksearch.rewards import resolve_reward

    with caplog.at_level(logging.INFO, logger="masksearch.rewards"):
        fn = resolve_reward(
            "llm_judge", {"api_key": CANARY, "url": f"http://u:{CANARY}@127.0.0.1:1/v1", "cache_path": ""}
        )
    assert caplog.records and CANARY not in caplog.text
    assert CANARY not in repr(fn)
