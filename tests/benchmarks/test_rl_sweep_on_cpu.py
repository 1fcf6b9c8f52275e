"""benchmarks/rl_sweep.py: its config parser and its table (the runs themselves are the benchmark)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from masksearch.core.errors import UserFacingError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("rl_sweep", ROOT / "benchmarks" / "rl_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_is_typed_by_the_learn_settings(sweep):
    name, values = sweep.parse_config("lr1e-5:rl_lr=1e-5,rl_steps=8,rl_gen_batches=2,curriculum=linear")
    assert name == "lr1e-5"
    assert values == {"rl_lr": 1e-5, "rl_steps": 8, "rl_gen_batches": 2, "curriculum": "linear"}
    assert isinstance(values["rl_steps"], int) and isinstance(values["rl_lr"], float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a:sft_steps=3", "not an RL knob"),
        ("a:rl_from=sft", "not an RL knob"),
        (":rl_lr=1e-5", "give it a name"),
    ],
)
def test_bad_config_is_one_line(sweep, text, message):
    with pytest.raises((SystemExit, UserFacingError)) as info:
        sweep.parse_config(text)
    assert message in str(info.value)


def test_table_has_a_row_per_config_and_a_column_per_mask_count(sweep, tmp_path):
    start = {"recall": 0.4, "format_ok": 0.9, "n": 3}
    row = {
        "name": "a",
        "settings": {k: 1 for k in sweep.RL_KNOBS},
        "rl_wall_s": 120.0,
        "recall": 0.5,
        "recall_diff": 0.1,
        "ci95": [0.02, 0.2],
        "by_mask": {
            "1": {"n": 2, "recall_diff": 0.0, "ci95": [0, 0]},
            "3": {"n": 1, "recall_diff": 0.5, "ci95": [0.5, 0.5]},
        },
    }
    table = sweep.write_table(tmp_path, start, [row])
    lines = table.splitlines()
    assert lines[2].endswith("| Δ 1-mask | Δ 3-mask |")
    assert lines[-1].startswith("| a |") and "+10.0 [+2.0, +20.0]" in lines[-1] and "+50.0 (n=1)" in lines[-1]
    assert (tmp_path / "sweep.md").read_text(encoding="utf-8").strip() == table
    assert json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))["rows"][0]["name"] == "a"


def test_a_row_saved_before_a_knob_existed_shows_what_it_ran_at(sweep, tmp_path):
    start = {"recall": 0.4, "format_ok": 0.9, "n": 3}
    old = {"name": "old", "settings": {k: 2 for k in sweep.RL_KNOBS if k != "rl_temperature"},
           "rl_wall_s": 60.0, "recall": 0.5, "recall_diff": 0.1, "ci95": [0.0, 0.2], "by_mask": {}}  # fmt: skip
    line = sweep.write_table(tmp_path, start, [old]).splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1 + sweep.RL_KNOBS.index("rl_temperature")] == "1.0"  # the recipe's T before the knob


def test_paired_differences_by_mask_count(sweep, tmp_path):
    for name, scores in (
        ("start", {"a": 0.0, "b": 1.0, "c": 0.0}),
        ("after", {"a": 1.0, "b": 1.0, "c": 0.0}),
    ):
        folder = tmp_path / name
        folder.mkdir()
        lines = [json.dumps({"id": i, "scores": {"recall": v}}) for i, v in scores.items()]
        (folder / "trajectories.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    row = sweep._paired(str(tmp_path / "start"), str(tmp_path / "after"), {"a": 1, "b": 1, "c": 2})
    assert row["n"] == 3 and row["recall_diff"] == pytest.approx(1 / 3)
    assert (
        row["by_mask"]["1"]["recall_diff"] == pytest.approx(0.5) and row["by_mask"]["2"]["recall_diff"] == 0.0
    )


def test_earlier_rows_from_the_same_start_are_kept(sweep, tmp_path):
    start = {"out": "/w/eval/sft", "recall": 0.4}
    rows = [{"name": "a"}, {"name": "b"}]
    (tmp_path / "sweep.json").write_text(json.dumps({"start": start, "rows": rows}), encoding="utf-8")
    assert sweep._earlier_rows(tmp_path, start, {"b"}) == [{"name": "a"}]  # b is rerun: its new row wins
    assert sweep._earlier_rows(tmp_path, {**start, "out": "/other/eval/sft"}, set()) == []  # another start
    assert sweep._earlier_rows(tmp_path / "none", start, set()) == []
