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


def test_entry_rejects_bad_model_path_before_ray(tmp_path):
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "masksearch.recipes.main_ppo",
            f"actor_rollout_ref.model.path={tmp_path}/missing",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no such folder" in proc.stderr and "Traceback" not in proc.stderr
    assert "ray" not in proc.stdout.lower()
    assert time.perf_counter() - started < 60
