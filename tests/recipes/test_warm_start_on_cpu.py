"""The warm start (``recipes/warm_start.py``): built once and reused, keyed by everything that
determines it, never left half-built; one real build with the tiny model, the rest with a stub
build step."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from masksearch.core.errors import UserFacingError
from masksearch.recipes import warm_start
from masksearch.recipes.warm_start import MARKER, WarmStartRecipe, warm_start_dir, warm_start_path

#: Seconds, not minutes: 8 one-mask rows of a small corpus slice, 4 taught, one SFT step.
TINY_KNOBS = {
    "ramp_samples": 8,
    "val_fraction": 0.2,
    "max_obs_tokens": 64,
    "max_response_length": 192,
    "sft_rows": 4,
    "sft_steps": 1,
    "sft_batch": 2,
}
TINY = WarmStartRecipe.of(skip_passages=0, **TINY_KNOBS)


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A corpus file: the fingerprint reads its bytes (the stub builds never search it)."""
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"id": "0", "contents": '"A"\nSome text.'}) + "\n", encoding="utf-8")
    return path


def _stub_build(calls: list[Path], delay: float = 0.0):
    """A build step that writes a config.json (and counts its calls) instead of training."""

    def build(recipe, base_model, corpus, work, out, echo):
        calls.append(out)
        (work / "scratch").write_text("half", encoding="utf-8")
        time.sleep(delay)
        (out / "config.json").write_text("{}", encoding="utf-8")
        return {"stub": True}

    return build


def _siblings(folder: Path) -> list[str]:
    """What a build left in the cache folder besides the models and the lock files."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


class TestCacheKey:
    def test_same_inputs_same_folder_named_after_the_base(self, tiny_model_path, corpus, tmp_path):
        one = warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path)
        two = warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path)
        assert one == two and one.parent == tmp_path and one.name.startswith(f"{tiny_model_path.name}-warm-")

    @pytest.mark.parametrize(
        "recipe",
        [
            WarmStartRecipe.of(skip_passages=0, **{**TINY_KNOBS, "sft_steps": 2}),  # the SFT run
            WarmStartRecipe.of(skip_passages=0, **{**TINY_KNOBS, "sft_lr": 1e-5}),  # the SFT run
            WarmStartRecipe.of(skip_passages=0, **{**TINY_KNOBS, "sft_micro_batch": 2}),  # a learn default
            WarmStartRecipe.of(skip_passages=0, **{**TINY_KNOBS, "max_masks": 2}),  # the rows taught
            WarmStartRecipe.of(
                skip_passages=0, **{**TINY_KNOBS, "max_obs_tokens": 96}
            ),  # the teacher's episodes
            replace(TINY, skip_passages=10),  # which passages the rows come from
        ],
    )
    def test_a_changed_setting_gives_another_folder(self, tiny_model_path, corpus, tmp_path, recipe):
        old = warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path)
        new = warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=recipe, cache_dir=tmp_path)
        assert new != old and new.parent == old.parent

    def test_settings_that_train_nothing_keep_the_folder(self, tiny_model_path, corpus, tmp_path):
        """The RL and eval knobs of make learn, and its work dir, are not the warm start's."""
        other = WarmStartRecipe.of(
            skip_passages=0, **TINY_KNOBS, rl_steps=9, val_samples=7, work_dir="elsewhere"
        )
        old = warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path)
        assert (
            warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=other, cache_dir=tmp_path) == old
        )

    def test_a_changed_corpus_gives_another_folder(self, tiny_model_path, corpus, tmp_path):
        old = warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path)
        corpus.write_text(corpus.read_text(encoding="utf-8").replace("Some", "Other"), encoding="utf-8")
        assert (
            warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path) != old
        )

    def test_another_base_model_gives_another_folder(self, tiny_model_path, corpus, tmp_path):
        import shutil

        other = Path(shutil.copytree(tiny_model_path, tmp_path / "other-model"))
        (other / "config.json").write_text("{}", encoding="utf-8")  # another model: other bytes
        old = warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path)
        assert warm_start_dir(base_model=other, corpus=corpus, recipe=TINY, cache_dir=tmp_path) != old

    def test_a_new_recipe_version_gives_another_folder(self, tiny_model_path, corpus, tmp_path, monkeypatch):
        old = warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path)
        monkeypatch.setattr(warm_start, "WARM_START_VERSION", warm_start.WARM_START_VERSION + 1)
        assert (
            warm_start_dir(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=tmp_path) != old
        )

    @pytest.mark.parametrize(
        ("which", "expected"),
        [
            ("base_model", "not an HF model folder (no config.json)"),  # an empty folder
            ("corpus", "no such file"),  # a missing corpus
        ],
    )
    def test_missing_inputs_are_one_line(self, tiny_model_path, corpus, tmp_path, which, expected):
        given = {"base_model": tiny_model_path, "corpus": corpus}
        given[which] = tmp_path / "missing" if which == "corpus" else tmp_path
        with pytest.raises(UserFacingError, match=re.escape(expected)):
            warm_start_path(**given, recipe=TINY, cache_dir=tmp_path / "cache")


class TestBuildSteps:
    """The build's bookkeeping, with a stub in place of the data + SFT stages."""

    def test_second_call_reuses_the_folder(self, tiny_model_path, corpus, tmp_path, monkeypatch):
        calls: list[Path] = []
        monkeypatch.setattr(warm_start, "_build", _stub_build(calls))
        kw = {"base_model": tiny_model_path, "corpus": corpus, "recipe": TINY, "cache_dir": tmp_path}
        first = warm_start_path(**kw)
        stamp = (first / MARKER).stat().st_mtime_ns
        assert warm_start_path(**kw) == first and len(calls) == 1
        assert (first / MARKER).stat().st_mtime_ns == stamp

    def test_failed_build_leaves_no_folder(self, tiny_model_path, corpus, tmp_path, monkeypatch):
        def fail(recipe, base_model, corpus, work, out, echo):
            (out / "config.json").write_text("{}", encoding="utf-8")  # half a model ...
            (work / "scratch").write_text("half", encoding="utf-8")
            raise UserFacingError("SFT failed (rc=1)")  # ... then the trainer fails

        monkeypatch.setattr(warm_start, "_build", fail)
        kw = {"base_model": tiny_model_path, "corpus": corpus, "recipe": TINY, "cache_dir": tmp_path}
        with pytest.raises(UserFacingError, match="SFT failed"):
            warm_start_path(**kw)
        assert not warm_start_dir(**kw).exists()
        assert _siblings(tmp_path) == []  # no temporary model folder, no work folder

    def test_unwritable_cache_is_one_line(self, tiny_model_path, corpus, tmp_path, monkeypatch):
        monkeypatch.setattr(warm_start, "_build", _stub_build([]))
        (tmp_path / "afile").write_text("x", encoding="utf-8")
        cache = tmp_path / "afile" / "models"  # a file on the way
        with pytest.raises(UserFacingError, match=r"cannot build the warm start in .*afile"):
            warm_start_path(base_model=tiny_model_path, corpus=corpus, recipe=TINY, cache_dir=cache)

    def test_leftovers_of_a_killed_build_are_removed(self, tiny_model_path, corpus, tmp_path, monkeypatch):
        kw = {"base_model": tiny_model_path, "corpus": corpus, "recipe": TINY, "cache_dir": tmp_path}
        target = warm_start_dir(**kw)
        for leftover in (f".{target.name}.tmp-x", f".{target.name}.work-y"):  # kill -9 mid-build
            (tmp_path / leftover).mkdir()
        target.mkdir()  # a folder without the marker is not trusted
        monkeypatch.setattr(warm_start, "_build", _stub_build([]))
        assert warm_start_path(**kw) == target and (target / MARKER).is_file()
        assert _siblings(tmp_path) == []

    def test_concurrent_calls_build_once(self, tiny_model_path, corpus, tmp_path, monkeypatch):
        calls: list[Path] = []
        monkeypatch.setattr(warm_start, "_build", _stub_build(calls, delay=0.5))
        kw = {"base_model": tiny_model_path, "corpus": corpus, "recipe": TINY, "cache_dir": tmp_path}
        said: list[str] = []
        results: list[Path] = []
        threads = [
            threading.Thread(target=lambda: results.append(warm_start_path(**kw, echo=said.append)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 2
        assert any("waiting for it" in line for line in said)  # the second caller said why it waited


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_search_workspace) -> Path:
    """A 60-article slice of the embedded corpus (with its index and RAMP rows, unused here)."""
    root = tmp_path_factory.mktemp("warm-start")
    return build_search_workspace(root, articles=60, samples=4)


@pytest.fixture(scope="module")
def built(workspace, tiny_model_path):
    """One real tiny warm start: the data and SFT stages of ``make learn`` on the slice."""
    kw = {
        "base_model": tiny_model_path,
        "corpus": workspace / "corpus.jsonl",
        "recipe": TINY,
        "cache_dir": workspace / "models",
    }
    said: list[str] = []
    return warm_start_path(**kw, echo=said.append), kw, said


def test_rows_come_after_the_skipped_passages(workspace, tiny_model_path, tmp_path):
    """``stage_data(skip_passages=n)``: the RAMP rows only mask passages after the corpus's first n."""
    import pyarrow.parquet as pq

    from masksearch.recipes.learn.stages import stage_data
    from masksearch.search_tool.corpus import read_corpus

    corpus = workspace / "corpus.jsonl"
    order = [p.id for p in read_corpus(corpus)]
    s = WarmStartRecipe.of(**{**TINY_KNOBS, "ramp_samples": 6}).learn_settings(tmp_path, tiny_model_path)
    data = stage_data(s, corpus=corpus, skip_passages=20)
    rows = pq.read_table(data["train"]).to_pylist() + pq.read_table(data["val"]).to_pylist()
    used = {row["extra_info"]["passage_id"] for row in rows}
    assert used and used.isdisjoint(order[:20]) and data["corpus"] == str(corpus)
    assert not (tmp_path / "data" / "corpus.jsonl").exists()  # the given corpus, not a new one


class TestRealBuild:
    def test_an_hf_folder_with_its_record(self, built):
        from transformers import AutoConfig, AutoTokenizer

        path, kw, said = built
        assert path == warm_start_dir(**kw)
        AutoConfig.from_pretrained(str(path))
        assert AutoTokenizer.from_pretrained(str(path)).eos_token == "<|im_end|>"
        assert list(path.glob("*.safetensors"))
        record = json.loads((path / MARKER).read_text(encoding="utf-8"))
        assert record["recipe"] == TINY.key()
        assert record["teacher"]["kept"] >= 1 and record["sft_rows"] >= 1 and len(record["losses"]) == 1
        assert (path / "build" / "teacher_report.json").is_file() and (
            path / "build" / "sft_train.log"
        ).is_file()
        assert _siblings(path.parent) == []  # the work folder is gone
        assert any(line.startswith("building the warm start once") for line in said)
        assert any(line.startswith("done in") for line in said)

    def test_built_once_then_reused(self, built, monkeypatch):
        path, kw, _ = built
        stamp = (path / MARKER).stat().st_mtime_ns

        def must_not_build(*args, **kwargs):
            raise AssertionError("the warm start was built again")

        monkeypatch.setattr(warm_start, "_build", must_not_build)
        said: list[str] = []
        assert warm_start_path(**kw, echo=said.append) == path
        assert (path / MARKER).stat().st_mtime_ns == stamp and said == []
