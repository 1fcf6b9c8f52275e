"""Set-up mistakes fail in a second with one line, before Ray starts."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from masksearch.core.errors import UserFacingError
from masksearch.recipes import preflight


class TestOverrideValue:
    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [
            (["actor_rollout_ref.model.path=/m"], "/m"),  # plain
            (["+actor_rollout_ref.model.path='/m'"], "/m"),  # appended and quoted
            (["actor_rollout_ref.model.path=/a", "actor_rollout_ref.model.path=/b"], "/b"),  # last wins
            (["data.train_files=x"], None),  # absent
        ],
    )
    def test_reads_hydra_overrides(self, overrides, expected):
        assert preflight.override_value(overrides, "actor_rollout_ref.model.path") == expected


class TestModelPath:
    def test_missing_local_folder(self, tmp_path):
        with pytest.raises(UserFacingError, match="no such folder"):
            preflight.check_model_path(str(tmp_path / "nope"))

    def test_folder_without_config(self, tmp_path):
        with pytest.raises(UserFacingError, match=r"no config\.json"):
            preflight.check_model_path(str(tmp_path))

    def test_uncached_hub_id_offline(self, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(UserFacingError, match="not in the local Hugging Face cache"):
            preflight.check_model_path("nobody-org/no-such-model-xyz")

    def test_real_model_passes(self, tiny_model_path):
        preflight.check_model_path(str(tiny_model_path))


class TestVersions:
    def test_wrong_verl_version_names_the_fix(self, monkeypatch):
        monkeypatch.setattr(preflight.importlib.metadata, "version", lambda name: "0.8.0")
        with pytest.raises(UserFacingError, match=r"pip install verl==0\.9\.1"):
            preflight.check_verl()

    def test_missing_torch_names_the_fix(self, monkeypatch):
        monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: None)
        with pytest.raises(UserFacingError, match=r"pip install torch==2\.13\.0"):
            preflight.check_torch()


def _run_entry(module: str, *overrides: str) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m module overrides…`` as a user runs it: the finished process and its wall seconds."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", module, *overrides], capture_output=True, text=True, check=False, timeout=120
    )
    return proc, time.perf_counter() - started


def test_entry_rejects_bad_model_path_before_ray(tmp_path):
    proc, seconds = _run_entry(
        "masksearch.recipes.main_ppo", f"actor_rollout_ref.model.path={tmp_path}/missing"
    )
    assert proc.returncode == 2
    assert "no such folder" in proc.stderr and "Traceback" not in proc.stderr
    assert "ray" not in proc.stdout.lower()
    assert seconds < 60


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    from masksearch.data.corpus import build_corpus
    from masksearch.search_tool.retrievers import build_index

    root = tmp_path_factory.mktemp("retriever")
    build_corpus(root / "corpus.jsonl", "embedded", limit=30, show_progress=False)
    build_index(root / "corpus.jsonl", "bm25", root / "index", show_progress=False)
    return root / "index"


class TestRetriever:
    def test_typo_index_is_one_line(self, tmp_path):
        with pytest.raises(
            UserFacingError, match=r"masksearch\.env\.retriever_index: .*index folder not found"
        ):
            preflight.check_retriever([f"masksearch.env.retriever_index={tmp_path}/typo"])

    def test_folder_that_is_not_an_index(self, tmp_path):
        with pytest.raises(UserFacingError, match=r"no manifest\.json"):
            preflight.check_retriever([f"+masksearch.env.retriever_index={tmp_path}"])

    def test_index_from_the_environment(self, tmp_path, monkeypatch):
        monkeypatch.setenv("MASKSEARCH_INDEX_DIR", str(tmp_path / "typo"))
        with pytest.raises(UserFacingError, match="index folder not found"):
            preflight.check_retriever([])

    def test_real_index_loads(self, small_index, monkeypatch):
        monkeypatch.delenv("MASKSEARCH_INDEX_DIR", raising=False)
        info = preflight.check_retriever([f"masksearch.env.retriever_index={small_index}"])
        assert info["ready"] is True and info["doc_count"] >= 30

    def test_nothing_configured_is_not_checked(self, monkeypatch):
        monkeypatch.delenv("MASKSEARCH_INDEX_DIR", raising=False)
        monkeypatch.delenv("MASKSEARCH_RETRIEVER_URL", raising=False)
        assert preflight.check_retriever(["masksearch.env.retriever_index=null"]) is None

    def test_dead_url_fails_within_the_deadline_without_secrets(self, free_port):
        port = free_port()
        started = time.monotonic()
        with pytest.raises(UserFacingError) as info:
            preflight.check_retriever(
                [f"masksearch.env.retriever_url=http://u:pw@127.0.0.1:{port}?key=k3y"], wait_s=1.5
            )
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message and "not ready within 1.5s" in message
        assert "pw" not in message and "k3y" not in message and "\n" not in message

    def test_server_that_becomes_ready(self, small_index, start_http_service, free_port):
        port = free_port()
        argv = [sys.executable, "-m", "masksearch.search_tool.cli", "retriever", "serve"]
        argv += ["--index", str(small_index), "--port", str(port), "--backend", "numpy"]
        with start_http_service(argv, f"http://127.0.0.1:{port}/health"):
            info = preflight.check_retriever([f"masksearch.env.retriever_url=http://127.0.0.1:{port}"])
        assert info["ready"] is True

    @pytest.mark.parametrize("value", ["0", "-3", "soon"])
    def test_bad_wait_setting(self, monkeypatch, value):
        monkeypatch.setenv(preflight.RETRIEVER_WAIT_ENV, value)
        with pytest.raises(UserFacingError, match=preflight.RETRIEVER_WAIT_ENV):
            preflight.retriever_wait_s()


def test_recipe_with_typo_index_fails_before_ray(tmp_path):
    proc, seconds = _run_entry(
        "masksearch.recipes.dapo_ramp",
        "masksearch.profile=cpu",
        f"masksearch.env.retriever_index={tmp_path}/typo",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and "retriever_index" in proc.stderr
    assert "Traceback" not in proc.stderr and "ray" not in proc.stdout.lower()
    assert seconds < 30


class TestJudge:
    KEY = "reward.custom_reward_function.reward_kwargs"

    def test_judge_without_url_fails_before_ray(self, monkeypatch):
        monkeypatch.delenv("MASKSEARCH_JUDGE_URL", raising=False)
        with pytest.raises(UserFacingError, match="MASKSEARCH_JUDGE_URL"):
            preflight.check_judge([f"+{self.KEY}.answer_reward=llm_judge"])
        with pytest.raises(UserFacingError, match="MASKSEARCH_JUDGE_URL"):
            preflight.check_judge([f"{self.KEY}.eval_metrics=[em,llm_judge]"])

    def test_judge_with_url_or_other_rewards_pass(self, monkeypatch):
        monkeypatch.delenv("MASKSEARCH_JUDGE_URL", raising=False)
        preflight.check_judge([f"+{self.KEY}.answer_reward=recall"])
        preflight.check_judge(
            [f"+{self.KEY}.answer_reward=llm_judge", f"+{self.KEY}.answer_reward_options.url=http://j:1"]
        )
        monkeypatch.setenv("MASKSEARCH_JUDGE_URL", "http://judge:8000")
        preflight.check_judge([f"+{self.KEY}.answer_reward=llm_judge"])
