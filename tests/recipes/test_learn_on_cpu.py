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
from masksearch.recipes.learn.report import (
    MASK_KEYS,
    STAGE_KEYS,
    by_mask_count,
    mask_counts_of,
    paired_bootstrap,
    paired_by_mask,
    portable_path,
    quarter_means,
    write_report,
)
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
            ({"EVOLVE_ROUNDS": "0", "RL_FROM": "evolve"}, "EVOLVE_ROUNDS=0: 0 skips self-evolve"),
            ({"EVOLVE_ROUNDS": "-1"}, "EVOLVE_ROUNDS=-1"),
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

    def test_paired_by_mask_splits_the_same_pairs_by_mask_count(self):
        before = {str(i): 0.0 for i in range(40)}
        after = {str(i): (1.0 if i < 10 else 0.0) for i in range(40)}
        masks = {str(i): 1 + i // 10 for i in range(40)}  # ids 0-9 have 1 mask (all improved), ...
        row = paired_by_mask(before, after, masks)
        assert (row["n"], row["recall_diff"]) == (40, 0.25) and row["ci95"][0] < 0.25 < row["ci95"][1]
        assert [row["by_mask"][k]["recall_diff"] for k in "1234"] == [1.0, 0.0, 0.0, 0.0]
        assert [row["by_mask"][k]["n"] for k in "1234"] == [10, 10, 10, 10]

    def test_portable_paths(self, tmp_path):
        assert portable_path(tmp_path / "sft" / "ckpt", tmp_path) == "sft/ckpt"
        assert portable_path(Path.home() / ".cache" / "m", tmp_path) == "~/.cache/m"
        assert portable_path("/elsewhere/a/b/c/d", tmp_path) == "…/b/c/d"
        assert (
            portable_path("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path)
            == "HuggingFaceTB/SmolLM2-135M-Instruct"
        )

    def test_quarter_means(self):
        assert quarter_means([0.0, 0.0, 1.0, 1.0]) == (0.0, 1.0)
        assert quarter_means([0.5]) == (0.5, 0.5)
        assert quarter_means([None, 0.0, float("nan"), 1.0]) == (0.0, 1.0)  # gaps of a by-mask curve


# ------------------------------------------------------------------------- report by mask count
#: The synthetic val set: (mask_num, answer) per row; row 6 is beyond the stages' n=6.
VAL_ROWS = [(1, "Paris"), (1, "Rome"), (2, "Oslo"), (2, "Bern"), (3, "Lima"), (3, "Quito"), (1, "Kyiv")]


def _val_parquet(path: Path) -> Path:
    """RAMP-shaped rows (prompt, ground truth, ``extra_info.mask_num``) as ``data/ramp`` writes them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "data_source": "ramp",
            "prompt": [{"role": "user", "content": f"Fill the [mask]s: row {i}"}],
            "reward_model": {"style": "rule", "ground_truth": [answer]},
            "extra_info": {"index": i, "mask_num": k, "masked_text": f"row {i} [mask]"},
        }
        for i, (k, answer) in enumerate(VAL_ROWS)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _eval_run(out: Path, data: str, recalls: dict[str, float], extra_ids: tuple[str, ...] = ()) -> None:
    """An eval folder as ``run_eval`` leaves it: one ``trajectories.jsonl`` record per sample id (the
    ids ``load_eval_dataset`` gives), ``results.json`` from eval's own ``summarise``."""
    from masksearch.core.atomic import atomic_write_json
    from masksearch.eval.report import summarise
    from masksearch.eval.runner import RESULTS_FILE, TRAJECTORIES_FILE

    out.mkdir(parents=True)
    records = [
        {
            "id": sid,
            "dataset": "val",
            "data_source": "ramp",
            "question": "q",
            "golds": ["a"],
            "answer": "a" if r else "b",
            "scores": {"em": r, "f1": r, "recall": r, "format_ok": 1.0},
            "stats": {"num_searches": 1, "num_turns": 2, "num_retrieval_errors": 0},
            "stop_reason": "answer",
            "error": None,
            "trajectory": None,
        }
        for sid, r in [*recalls.items(), *((x, 1.0) for x in extra_ids)]
    ]
    (out / TRAJECTORIES_FILE).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    atomic_write_json(out / RESULTS_FILE, {"metrics": ["em", "f1", "recall"], **summarise(records, ["em"])})


def _stage(root: Path, name: str, data: str, recalls: dict[str, float], **kw) -> dict:
    out = root / "eval" / name
    _eval_run(out, data, recalls, **kw)
    mean = sum(recalls.values()) / len(recalls)
    return {"name": name, "model": str(root / name), "data": data, "out": str(out), "n": len(recalls),
            "format_ok": 1.0, "em": mean, "f1": mean, "recall": mean, "mean_searches": 1.0}  # fmt: skip


class TestReportByMaskCount:
    @pytest.fixture
    def val(self, tmp_path):
        from masksearch.eval.datasets import load_eval_dataset

        path = str(_val_parquet(tmp_path / "val.parquet"))
        return path, [s.id for s in load_eval_dataset(path).samples]

    def test_mask_counts_join_on_the_eval_ids(self, val):
        path, ids = val
        assert mask_counts_of(path, 6) == dict(zip(ids[:6], [1, 1, 2, 2, 3, 3], strict=True))
        assert len(mask_counts_of(path)) == 7
        assert mask_counts_of("fanoutqa:dev") == {} and mask_counts_of(None) == {}

    def test_split_counts_only_the_stage_samples(self, val, tmp_path):
        path, ids = val
        # the run folder also holds a record of row 6 (an earlier, larger run): not this stage's
        _eval_run(tmp_path / "e", path, {ids[0]: 1.0, ids[1]: 0.0, ids[2]: 1.0}, extra_ids=(ids[6],))
        split = by_mask_count(tmp_path / "e", mask_counts_of(path, 3))
        assert list(split) == ["1", "2"] and list(split["1"]) == list(MASK_KEYS)
        assert (split["1"]["n"], split["1"]["recall"], split["2"]["recall"]) == (2, 0.5, 1.0)

    def test_records_that_carry_their_mask_count(self, tmp_path):
        out = tmp_path / "e"
        _eval_run(out, "x", {"a": 1.0, "b": 0.0})
        lines = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
        lines[0]["mask_num"], lines[1]["extra_info"] = 4, {"mask_num": 2}
        (out / "trajectories.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        assert {k: v["recall"] for k, v in by_mask_count(out, {}).items()} == {"2": 0.0, "4": 1.0}

    def test_report_json_md_and_png(self, val, tmp_path):
        path, ids = val
        root = tmp_path / "work"
        base = dict(zip(ids[:6], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0], strict=True))
        sft = dict(zip(ids[:6], [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], strict=True))
        stages = [
            _stage(root, "base", path, base, extra_ids=(ids[6],)),
            _stage(root, "sft", path, sft),
            _stage(root, "rl-fanoutqa", "fanoutqa:dev", {"fanoutqa_dev:0:ab": 0.5}),
        ]
        nan = float("nan")
        curve = {"step": [1, 2, 3, 4], "reward/acc/mean": [0.1, 0.2, 0.3, 0.4],
                 "reward/format_ok/mean": [1.0] * 4, "env/searches_per_sample": [1.0, 1.0, 1.5, 2.0],
                 "reward/acc/mask_2": [nan, 0.0, 0.5, 1.0], "reward/acc/mask_1": [0.2, 0.4, 0.6, 0.8]}  # fmt: skip
        speed = {"sft": [10.0, 90.0, 110.0], "rl_update": [50.0, 100.0]}  # first step: warm-up, left out
        report = write_report(
            root, stages, [("base", "sft")], curve, extra={"machine": "test", "speed": speed}
        )
        on_disk = json.loads((root / "report.json").read_text())
        assert on_disk == json.loads(json.dumps(report))
        assert list(on_disk) == ["stages", "deltas", "rl_curve", "by_mask_count", "health_events"]
        assert all(list(st) == list(STAGE_KEYS) for st in on_disk["stages"])
        split = on_disk["by_mask_count"]
        assert list(split) == ["base", "sft", "rl-fanoutqa"] and split["rl-fanoutqa"] == {}
        assert {k: (v["n"], v["recall"]) for k, v in split["sft"].items()} == {
            "1": (2, 1.0), "2": (2, 0.5), "3": (2, 0.0)
        }  # fmt: skip
        assert split["base"]["1"]["recall"] == 0.5  # row 6 (beyond n) left out
        rl_curve = on_disk["rl_curve"]
        assert list(rl_curve)[4:] == ["reward/acc/mask_1", "reward/acc/mask_2"]
        assert rl_curve["reward/acc/mask_2"] == [None, 0.0, 0.5, 1.0]  # valid JSON: null, not NaN
        md = (root / "report.md").read_text()
        assert "| stage | 1 mask (n=2) | 2 masks (n=2) | 3 masks (n=2) |" in md
        assert "| base | 50.0 | 0.0 | 0.0 |" in md and "| sft | 100.0 | 50.0 | 0.0 |" in md
        assert "rl-fanoutqa |" not in md.split("by mask count")[1].split("\n\n")[1]
        assert "1 mask 0.200 → 0.800 (4 step(s)); 2 masks 0.000 → 1.000 (3 step(s))" in md
        assert str(root) not in md
        assert "SFT 100, RL update 100; SFT / RL update = 1.00x." in md
        assert "Training health (RL watchdog): off." in md and on_disk["health_events"] is None
        assert (root / "learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_report_lists_the_watchdog_events(self, tmp_path):
        root = tmp_path / "work"
        stages = [_stage(root, "rl-fanoutqa", "fanoutqa:dev", {"x": 1.0})]
        event = {"step": 7, "rule": "grad_norm_spike", "action": "warn", "metric": "actor/grad_norm",
                 "value": 52.0, "baseline": 1.1, "threshold": 10.0, "bad_steps": 2, "says": "grad norm spiked"}  # fmt: skip
        write_report(root, stages, [], {"step": []}, extra={"machine": "test"}, health_events=[])
        assert "no events; no rule tripped during RL" in (root / "report.md").read_text()
        report = write_report(
            root, stages, [], {"step": []}, extra={"machine": "test"}, health_events=[event]
        )
        assert report["health_events"] == [event]
        assert "- masksearch: health: warn at step 7: grad_norm_spike" in (root / "report.md").read_text()

    def test_report_without_mask_counts_has_no_table(self, tmp_path):
        root = tmp_path / "work"
        stages = [_stage(root, "rl-fanoutqa", "fanoutqa:dev", {"x": 1.0})]
        report = write_report(
            root,
            stages,
            [],
            {"step": []},
            extra={"machine": "test", "speed": {"sft": [], "rl_update": [9.0]}},
        )
        assert report["by_mask_count"] == {"rl-fanoutqa": {}}
        md = (root / "report.md").read_text()
        assert (
            "by mask count" not in md and "Training speed" not in md
        )  # an SFT run from before it was logged


def test_read_rl_curve_picks_up_the_mask_counts_logged(tmp_path):
    from masksearch.recipes.learn.stages import read_rl_curve

    rows = [
        {"step": 1, "data": {"reward/acc/mean": 0.5, "reward/acc/mask_1": 0.5}},
        {"step": 2, "data": {"reward/acc/mean": 0.25, "reward/acc/mask_1": 0.0, "reward/acc/mask_3": 1.0}},
        {"step": 3, "data": {"reward/acc/mean": 0.0, "reward/acc/mask_x": 1.0}},  # not a count
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "torn{", encoding="utf-8")
    curve = read_rl_curve(path)
    assert list(curve) == [*CURVE_KEYS, "reward/acc/mask_1", "reward/acc/mask_3"]
    assert curve["step"] == [1, 2, 3] and curve["reward/acc/mask_1"][:2] == [0.5, 0.0]
    mask_3 = curve["reward/acc/mask_3"]
    assert mask_3[1] == 1.0 and mask_3[0] != mask_3[0] and mask_3[2] != mask_3[2]  # NaN where absent


def test_read_update_speed_is_tokens_per_second_of_each_step(tmp_path):
    from masksearch.recipes.learn.stages import read_update_speed

    rows = [{"step": 1, "data": {"timing_per_token_ms/update_actor": 8.0}}, {"step": 2, "data": {}},
            {"step": 3, "data": {"timing_per_token_ms/update_actor": 10.0}}]  # fmt: skip
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert read_update_speed(path) == [125.0, 100.0]
    assert read_update_speed(tmp_path / "missing.jsonl") == []


class TestRlStage:
    """The RL stage builds its run from the typed settings and reads how it ended from run_result.json."""

    def test_masksearch_overrides_come_from_the_settings_objects(self, tmp_path):
        from masksearch.recipes.learn.stages import _rl_overrides

        s = settings_from_env({"LEARN_SCALE": "tiny", "WORK_DIR": str(tmp_path), "CURRICULUM": "none"})
        overrides = _rl_overrides(s, tmp_path / "model", tmp_path / "rl")
        assert f"masksearch.env.max_turns={s.max_turns}" in overrides
        assert f"masksearch.env.retriever_index={tmp_path / 'data' / 'index_bm25'}" in overrides
        assert "masksearch.curriculum.strategy=none" in overrides  # pinned, not left to the YAML's staged
        assert "masksearch.dynamic_sampling.max_gen_batches=1" in overrides

    def test_rl_gen_batches_turns_dynamic_sampling_on(self, tmp_path):
        from masksearch.recipes.learn.main import stage_fingerprint
        from masksearch.recipes.learn.stages import _rl_overrides

        s = settings_from_env({"LEARN_SCALE": "tiny", "WORK_DIR": str(tmp_path), "RL_GEN_BATCHES": "3"})
        assert "masksearch.dynamic_sampling.max_gen_batches=3" in _rl_overrides(
            s, tmp_path / "m", tmp_path / "rl"
        )
        assert stage_fingerprint(s, "rl")["rl_gen_batches"] == 3  # a changed value re-runs RL, not SFT
        assert "rl_gen_batches" not in stage_fingerprint(s, "sft")

    def test_rl_temperature_reaches_the_rollout(self, tmp_path):
        from masksearch.recipes.learn.main import stage_fingerprint
        from masksearch.recipes.learn.stages import _rl_overrides

        s = settings_from_env({"LEARN_SCALE": "tiny", "WORK_DIR": str(tmp_path), "RL_TEMPERATURE": "0.7"})
        assert "actor_rollout_ref.rollout.temperature=0.7" in _rl_overrides(
            s, tmp_path / "m", tmp_path / "rl"
        )
        assert stage_fingerprint(s, "rl")["rl_temperature"] == 0.7

    @staticmethod
    def _stage_rl(tmp_path, monkeypatch, result: dict | None, returncode: int):
        from masksearch.core.atomic import atomic_write_json
        from masksearch.recipes.learn import stages

        def fake_run(command, cwd, **kwargs):
            folder = Path(
                next(o for o in command if o.startswith("trainer.default_local_dir=")).split("=", 1)[1]
            )
            if result is not None:
                atomic_write_json(folder / "run_result.json", result)
            (folder / "global_step_1").mkdir(parents=True, exist_ok=True)
            kwargs["stdout"].write("masksearch: error: a line the stage must not need\n")
            return subprocess.CompletedProcess(command, returncode)

        monkeypatch.setattr(stages.subprocess, "run", fake_run)
        monkeypatch.setattr("masksearch.backends.checkpoints.resolve_model_path", lambda step_dir: step_dir)
        s = settings_from_env({"LEARN_SCALE": "tiny", "WORK_DIR": str(tmp_path)})
        return stages.stage_rl(s, tmp_path / "model")

    @pytest.mark.parametrize(
        ("result", "returncode", "message"),
        [
            (
                {"status": "health_stop", "error": "masksearch: health: stop at step 1"},
                3,
                "rc=3, health_stop",
            ),
            ({"status": "error", "error": "Unknown masksearch.env key(s) ['topkk']"}, 2, "['topkk']"),
            ({"status": "running", "error": None}, -9, "rc=-9, running): no error recorded (killed?)"),
            (None, 1, "rc=1, no run_result.json"),  # died before writing anything
        ],
    )
    def test_failure_is_read_from_the_result_file(self, tmp_path, monkeypatch, result, returncode, message):
        with pytest.raises(UserFacingError) as info:
            self._stage_rl(tmp_path, monkeypatch, result, returncode)
        assert message in str(info.value) and "must not need" not in str(info.value)

    def test_budget_comes_from_the_result_file(self, tmp_path, monkeypatch):
        result = {"status": "ok", "error": None, "budget": {"line": "budget: 1 mask(s) ... -> fits"}}
        summary = self._stage_rl(tmp_path, monkeypatch, result, 0)
        assert summary["budget"] == "budget: 1 mask(s) ... -> fits"


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
        assert list(report) == ["stages", "deltas", "rl_curve", "by_mask_count", "health_events"]
        assert [s["name"] for s in report["stages"]] == ["base", "sft", "evolve", "rl", "rl-fanoutqa"]
        for stage in report["stages"]:
            assert list(stage) == list(STAGE_KEYS) and stage["n"] >= 1
        final = Path(report["stages"][-2]["model"])
        assert (final / "config.json").is_file()  # the final model's HF folder
        for delta in report["deltas"]:
            assert list(delta) == ["from", "to", "recall_diff", "ci95"] and len(delta["ci95"]) == 2
        assert [(d["from"], d["to"]) for d in report["deltas"]][-1] == ("sft", "rl")
        curve = report["rl_curve"]
        # the tiny run has 1-mask rows only: the trainer logs reward/acc/mask_1 (recipes/trainer.py)
        assert list(curve) == [*CURVE_KEYS, "reward/acc/mask_1"] and curve["step"] == [1]
        assert all(len(curve[k]) == 1 for k in curve)
        assert report["health_events"] == []  # the watchdog is on by default (warn); nothing tripped
        split = report["by_mask_count"]
        assert list(split) == [s["name"] for s in report["stages"]] and split["rl-fanoutqa"] == {}
        for stage in report["stages"][:-1]:  # every val sample has 1 mask
            assert list(split[stage["name"]]) == ["1"] and split[stage["name"]]["1"]["n"] == stage["n"]

    def test_report_md_names_no_absolute_path(self, learned):
        """It feeds the README (``--readme``): paths are relative to the work folder or under ``~``."""
        work, _, _, _ = learned
        text = (work / "report.md").read_text()
        assert str(work) not in text and str(Path.home()) not in text
        assert "Final model (HF folder, in the work folder): `rl/" in text
        assert "Training speed (median tokens/s per step, first step left out): SFT " in text

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


def test_knob_added_after_a_run_is_read_as_its_default(tmp_path):
    """A work dir from before a knob existed resumes when the knob keeps its default, else is refused."""
    from masksearch.core.atomic import atomic_write_json
    from masksearch.recipes.learn.main import _Stages, stage_fingerprint

    s = settings_from_env({"WORK_DIR": str(tmp_path)})
    old = stage_fingerprint(s, "eval_base")
    old.pop("base_val_samples")  # the marker an older version wrote
    (tmp_path / "stages").mkdir()
    atomic_write_json(tmp_path / "stages" / "eval_base.json", {"n": 1, "_knobs": old})
    assert _Stages(tmp_path, s).run("eval_base", lambda: pytest.fail("must be skipped"))["n"] == 1
    changed = settings_from_env({"WORK_DIR": str(tmp_path), "BASE_VAL_SAMPLES": "7"})
    with pytest.raises(UserFacingError, match="BASE_VAL_SAMPLES 100 -> 7"):
        _Stages(tmp_path, changed).run("eval_base", dict)


def test_refused_budget_is_one_line(tmp_path, tiny_model_path):
    proc = _learn(tmp_path, tiny_model_path, MAX_RESPONSE_LENGTH="100")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("masksearch learn: error: budget cannot fit")
    assert not (tmp_path / "data").exists()  # refused before any stage ran


def test_a_skipped_stage_whose_outputs_are_gone_is_refused_in_one_line(tmp_path):
    """A marker says "done" but a file it names was deleted: refused with what to delete, not a traceback later."""
    from masksearch.core.atomic import atomic_write_json
    from masksearch.recipes.learn.main import _Stages

    s = settings_from_env({"WORK_DIR": str(tmp_path)})
    ramp = tmp_path / "data" / "ramp"
    marker = {
        "train": str(ramp / "train.parquet"),
        "val": str(ramp / "val.parquet"),
        "_knobs": stage_fingerprint(s, "data"),
    }
    (tmp_path / "stages").mkdir()
    atomic_write_json(tmp_path / "stages" / "data.json", marker)
    with pytest.raises(
        UserFacingError, match=r"stage data finished before, but its train .*train\.parquet is gone"
    ):
        _Stages(tmp_path, s).run("data", lambda: pytest.fail("must not run"))
    ramp.mkdir(parents=True)
    for name in ("train.parquet", "val.parquet"):
        (ramp / name).write_bytes(b"")
    assert (
        _Stages(tmp_path, s).run("data", lambda: pytest.fail("must be skipped"))["train"] == marker["train"]
    )


def test_a_missing_file_mid_run_is_one_line(tmp_path, monkeypatch, capsys):
    from masksearch.recipes.learn import main as learn_main

    def gone(settings):
        raise FileNotFoundError(
            2, "No such file or directory", str(tmp_path / "data" / "ramp" / "train.parquet")
        )

    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    monkeypatch.setattr(learn_main, "run_pipeline", gone)
    assert learn_main.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.parquet is missing" in err and "stages/" in err


def test_evolve_rounds_0_runs_no_evolve_stage_and_rl_starts_from_sft(tmp_path, monkeypatch):
    """The stage order of ``run_pipeline`` with every stage stubbed (the real ones: the slow e2e)."""
    from masksearch.recipes.learn import main as learn_main
    from masksearch.recipes.learn import report as learn_report
    from masksearch.recipes.learn import stages

    ran: list[str] = []

    def stage(name, **out):
        def fn(*args, **kwargs):
            ran.append(name)
            return {"model": str(tmp_path / name), **out}

        return fn

    def evaluate(s, name, model, spec, n):
        ran.append(f"eval_{name}:{Path(model).name}")
        return {"name": name, "n": n, "format_ok": 1.0, "em": 0.0, "recall": 0.5, "mean_searches": 1.0}

    monkeypatch.setattr(learn_main, "in_child", lambda fn, *args: fn(*args))
    monkeypatch.setattr(stages, "stage_data", stage("data", val=str(tmp_path / "val.parquet")))
    monkeypatch.setattr(stages, "base_model", lambda s: tmp_path / "base")
    monkeypatch.setattr(stages, "stage_sft", stage("sft"))
    monkeypatch.setattr(stages, "stage_evolve", stage("evolve"))

    def rl(s, start):
        ran.append(f"rl:{Path(start).name}")
        return {"model": str(tmp_path / "rl"), "rl_curve": {}}

    monkeypatch.setattr(stages, "stage_rl", rl)
    monkeypatch.setattr(stages, "stage_eval", evaluate)
    monkeypatch.setattr(
        learn_report, "write_report", lambda root, evals, pairs, curve, **kw: {"stages": evals}
    )
    s = settings_from_env({"WORK_DIR": str(tmp_path / "a"), "EVOLVE_ROUNDS": "0"})
    report = learn_main.run_pipeline(s)
    assert ran == [
        "data",
        "eval_base:base",
        "sft",
        "eval_sft:sft",
        "rl:sft",
        "eval_rl:rl",
        "eval_rl-fanoutqa:rl",
    ]
    assert [e["name"] for e in report["stages"]] == ["base", "sft", "rl", "rl-fanoutqa"]
    ran.clear()
    learn_main.run_pipeline(settings_from_env({"WORK_DIR": str(tmp_path / "b"), "RL_FROM": "evolve"}))
    assert ran[4:7] == ["evolve", "eval_evolve:evolve", "rl:evolve"]
