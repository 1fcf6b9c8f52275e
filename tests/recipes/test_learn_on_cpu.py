"""``python -m masksearch.recipes.learn``: settings, the report's arithmetic, and (slow) the whole
pipeline's plumbing at tiny scale with the random tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from masksearch.core.errors import UserFacingError
from masksearch.recipes.learn.main import STAGES, stage_fingerprint
from masksearch.recipes.learn.report import STAGE_KEYS, paired_bootstrap, quarter_means
from masksearch.recipes.learn.settings import SCALES, settings_from_env

CURVE_KEYS = ["step", "reward/acc/mean", "reward/format_ok/mean", "env/searches_per_sample"]


class TestSettings:
    def test_scale_then_knobs(self):
        s = settings_from_env({"LEARN_SCALE": "tiny", "SFT_STEPS": "3", "FORMAT_WEIGHT": "0.5"})
        assert s.scale == "tiny" and s.sft_steps == 3 and s.format_weight == 0.5
        assert s.rl_steps == SCALES["tiny"]["rl_steps"]  # the preset where no knob is set

    def test_full_scale_keeps_the_env_defaults(self):
        from masksearch.env.config import SearchEnvConfig

        env = settings_from_env({"LEARN_SCALE": "full"}).env_config()
        assert (env.topk, env.max_obs_tokens) == (SearchEnvConfig().topk, SearchEnvConfig().max_obs_tokens)

    @pytest.mark.parametrize(
        ("environ", "message"),
        [
            ({"LEARN_SCALE": "huge"}, "choose one of tiny, default, full"),
            ({"SFT_STEPS": "many"}, "SFT_STEPS='many': expected an integer"),
            ({"RL_FROM": "base"}, "choose evolve or sft"),
        ],
    )
    def test_bad_knobs_are_one_line_errors(self, environ, message):
        with pytest.raises(UserFacingError, match=message):
            settings_from_env(environ)

    def test_fingerprints_grow_along_the_stages(self):
        s = settings_from_env({})
        assert "rl_steps" not in stage_fingerprint(s, "sft") and "sft_steps" in stage_fingerprint(s, "rl")
        assert set(stage_fingerprint(s, "data")) < set(stage_fingerprint(s, STAGES[-1]))


class TestReportArithmetic:
    def test_paired_bootstrap_ci_brackets_the_mean_and_pairs_by_id(self):
        before = {str(i): 0.0 for i in range(100)}
        after = {str(i): (1.0 if i % 2 else 0.0) for i in range(100)} | {"extra": 1.0}
        diff, (lo, hi), n = paired_bootstrap(before, after)
        assert n == 100 and diff == 0.5 and lo < 0.5 < hi and hi - lo < 0.3
        assert paired_bootstrap({}, after)[2] == 0

    def test_quarter_means(self):
        assert quarter_means([0.0, 0.0, 1.0, 1.0]) == (0.0, 1.0)
        assert quarter_means([0.5]) == (0.5, 0.5)


# ------------------------------------------------------------------------------------ slow e2e
def _learn(work: Path, tiny_model_path: Path, **env: str) -> subprocess.CompletedProcess:
    run_env = {
        **os.environ,
        "LEARN_SCALE": "tiny",
        "WORK_DIR": str(work),
        "MODEL_PATH": str(tiny_model_path),
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "masksearch.recipes.learn"], env=run_env, capture_output=True, text=True,
        timeout=1500, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def learned(tmp_path_factory, tiny_model_path):
    work = tmp_path_factory.mktemp("learn")
    started = time.perf_counter()
    first = _learn(work, tiny_model_path)
    first_s = time.perf_counter() - started
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    started = time.perf_counter()
    again = _learn(work, tiny_model_path)
    again_s = time.perf_counter() - started
    assert again.returncode == 0, again.stderr[-4000:]
    print(f"\nlearn tiny: first run {first_s:.0f}s, re-run {again_s:.0f}s")
    return work, first, again, again_s


@pytest.mark.slow
class TestLearnPipeline:
    def test_every_stage_leaves_its_outputs(self, learned):
        work, first, _, _ = learned
        for stage in STAGES:
            assert (work / "stages" / f"{stage}.json").is_file(), stage
        for path in ("data/ramp/train.parquet", "data/ramp/val.parquet", "data/index_bm25/manifest.json",
                     "sft/rules/kept.jsonl", "sft/sft.parquet", "evolve/round_1/synth/report.json",
                     "evolve/evolve_report.json", "rl/metrics.jsonl", "report.md", "learning.png"):  # fmt: skip
            assert (work / path).is_file(), path
        for name in ("base", "sft", "evolve", "rl", "rl-fanoutqa"):
            assert (work / "eval" / name / "results.json").is_file(), name
        assert (work / "learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "budget: 1 mask(s)" in first.stdout and "fits" in first.stdout

    def test_report_schema(self, learned):
        work, _, _, _ = learned
        report = json.loads((work / "report.json").read_text())
        assert list(report) == ["stages", "deltas", "rl_curve"]
        assert [s["name"] for s in report["stages"]] == ["base", "sft", "evolve", "rl", "rl-fanoutqa"]
        for stage in report["stages"]:
            assert list(stage) == list(STAGE_KEYS) and stage["n"] >= 1
        final = Path(report["stages"][-2]["model"])
        assert (final / "config.json").is_file()  # the final model's HF folder
        for delta in report["deltas"]:
            assert list(delta) == ["from", "to", "recall_diff", "ci95"] and len(delta["ci95"]) == 2
        assert [(d["from"], d["to"]) for d in report["deltas"]][-1] == ("sft", "rl")
        curve = report["rl_curve"]
        assert list(curve) == CURVE_KEYS and curve["step"] == [1]
        assert all(len(curve[k]) == 1 for k in CURVE_KEYS)

    def test_rerun_skips_finished_stages(self, learned):
        _, _, again, again_s = learned
        skipped = [line for line in again.stdout.splitlines() if "finished before, skipped" in line]
        assert len(skipped) == len(STAGES) and "running" not in again.stdout
        assert again_s < 120

    def test_changed_knob_is_refused_in_one_line(self, learned, tiny_model_path):
        work, _, _, _ = learned
        proc = _learn(work, tiny_model_path, SFT_STEPS="2")
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
        assert "stage sft" in proc.stderr and "SFT_STEPS 1 -> 2" in proc.stderr


def test_refused_budget_is_one_line(tmp_path, tiny_model_path):
    proc = _learn(tmp_path, tiny_model_path, MAX_RESPONSE_LENGTH="100")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("masksearch learn: error: budget cannot fit")
    assert not (tmp_path / "data").exists()  # refused before any stage ran
