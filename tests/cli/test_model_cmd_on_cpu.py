"""``masksearch model tiny``: a shape or an ``--out`` it cannot build is one line and exit 2, before
any model work (no traceback, nothing written)."""

from __future__ import annotations

import json

import pytest

from masksearch.cli.main import main


def _tiny(out, *extra):
    return main(["model", "tiny", "--out", str(out), *extra])


class TestShape:
    @pytest.mark.parametrize(
        ("extra", "expected"),
        [
            (["--hidden-size", "7"], "--hidden-size 7: must be a positive multiple of 8"),  # not 4 heads
            (["--hidden-size", "12"], "--hidden-size 12: must be a positive multiple of 8"),  # head size 3
            (["--hidden-size", "0"], "--hidden-size 0: must be a positive multiple of 8"),  # empty
            (["--hidden-size", "-8"], "--hidden-size -8: must be a positive multiple of 8"),  # negative
            (["--num-layers", "0"], "--num-layers 0: must be at least 1"),  # no layer
            (["--num-layers", "-1"], "--num-layers -1: must be at least 1"),  # negative
        ],
    )
    def test_bad_shape_is_one_line(self, tmp_path, capsys, extra, expected):
        assert _tiny(tmp_path / "m", *extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("masksearch model: error: ") and expected in err
        assert not (tmp_path / "m").exists()

    def test_help_states_the_defaults(self, capsys):
        with pytest.raises(SystemExit):
            main(["model", "tiny", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: 64)" in text and "(default: 2)" in text


class TestOut:
    def test_under_a_file(self, tmp_path, capsys):
        (tmp_path / "afile").write_text("x")
        assert _tiny(tmp_path / "afile" / "x") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "afile is a file, not a folder" in err

    def test_is_a_file(self, tmp_path, capsys):
        (tmp_path / "afile").write_text("x")
        assert _tiny(tmp_path / "afile") == 2
        assert "is a file; give a folder" in capsys.readouterr().err

    def test_non_empty_folder(self, tmp_path, capsys):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "notes.txt").write_text("mine")
        assert _tiny(tmp_path / "m") == 2
        assert "not empty" in capsys.readouterr().err
        assert (tmp_path / "m" / "notes.txt").read_text() == "mine"

    def test_model_of_another_shape(self, tmp_path, capsys):
        # build_tiny_model would return the folder as it is; asking for another shape must say so
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.json").write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 2}))
        assert _tiny(tmp_path / "m", "--hidden-size", "32") == 2
        assert "already holds a model with hidden size 64 and 2 layer(s)" in capsys.readouterr().err

    def test_model_of_the_same_shape_is_reused(self, tmp_path, capsys):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.json").write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 2}))
        assert _tiny(tmp_path / "m") == 0
        assert capsys.readouterr().out.strip() == str(tmp_path / "m")


class TestWarmStartPath:
    """``masksearch model path --warm-start``: the warm start's folder on stdout, alone (for
    ``MODEL_PATH=$(…)``), progress on stderr; a failed build is one line and exit 2. The build step
    is a stub here (tests/recipes/test_warm_start_on_cpu.py builds a real one)."""

    @pytest.fixture
    def defaults(self, tmp_path, monkeypatch, tiny_model_path):
        """The embedded model and corpus replaced by the tiny model and a one-passage corpus."""
        import masksearch.data.corpus as corpus_module
        import masksearch.engine.models as models

        corpus = tmp_path / "corpus.jsonl"
        corpus.write_text(json.dumps({"id": "0", "contents": '"A"\nSome text.'}) + "\n", encoding="utf-8")
        monkeypatch.setattr(models, "embedded_model_path", lambda cache_dir=None: tiny_model_path)
        monkeypatch.setattr(corpus_module, "embedded_corpus_path", lambda *a, **k: corpus)
        return tmp_path / "models"

    def test_prints_the_folder_built_once(self, defaults, capsys, monkeypatch):
        from masksearch.recipes import warm_start

        calls = []

        def build(recipe, base_model, corpus, work, out, echo):
            calls.append(out)
            (out / "config.json").write_text("{}", encoding="utf-8")
            return {}

        monkeypatch.setattr(warm_start, "_build", build)
        argv = ["model", "path", "--warm-start", "--cache-dir", str(defaults)]
        assert main(argv) == 0
        first = capsys.readouterr()
        assert first.out.strip() == str(warm_start.warm_start_dir(cache_dir=defaults))
        assert len(first.out.splitlines()) == 1 and "[warm-start] building the warm start once" in first.err
        assert main(argv) == 0  # reused: no second build, nothing said
        again = capsys.readouterr()
        assert again.out == first.out and again.err == "" and len(calls) == 1

    def test_failed_build_is_one_line(self, defaults, capsys, monkeypatch):
        from masksearch.core.errors import UserFacingError
        from masksearch.recipes import warm_start

        def fail(*args, **kwargs):
            raise UserFacingError("SFT failed (rc=1); see train.log")

        monkeypatch.setattr(warm_start, "_build", fail)
        assert main(["model", "path", "--warm-start", "--cache-dir", str(defaults)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert (
            captured.err.strip().splitlines()[-1]
            == "masksearch model: error: SFT failed (rc=1); see train.log"
        )
        assert "Traceback" not in captured.err
        assert not warm_start.warm_start_dir(cache_dir=defaults).exists()
