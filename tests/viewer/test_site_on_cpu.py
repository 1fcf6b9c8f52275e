"""Building the site (files, escaping, bounds, compare, CLI, --serve) without a browser."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from masksearch.cli.main import main
from masksearch.core.errors import UserFacingError
from masksearch.viewer.site import CHUNK_SIZE, build_site, compare_runs, js_json
from masksearch.viewer.sources import load_sources


def _read_js(path, prefix):
    text = path.read_text(encoding="utf-8")
    assert text.startswith(prefix)
    return json.loads(text[len(prefix) :].rstrip().rstrip(";"))


class TestBuild:
    def test_files_and_index_rows(self, toy, tmp_path):
        toy.write_eval_run(tmp_path / "run", toy.eval_records(7))
        res = build_site([tmp_path / "run"], tmp_path / "site")
        site = tmp_path / "site"
        for name in (
            "index.html",
            "sample.html",
            "assets/app.js",
            "assets/style.css",
            "data/index.js",
            "data/meta.js",
            "data/s/00000.js",
        ):
            assert (site / name).is_file(), name
        index = _read_js(site / "data" / "index.js", "window.MS_INDEX = ")
        assert res.n_samples == 7 and len(index["rows"]) == 7 and index["page_size"] == 50
        assert [r["missed"] for r in index["rows"]][:4] == [True, False, False, True]

    def test_no_network_references(self, toy, tmp_path):
        toy.write_eval_run(tmp_path / "run", toy.eval_records(3))
        toy.write_learn_report(tmp_path / "learn")
        build_site(
            [tmp_path / "run", tmp_path / "learn"],
            tmp_path / "site",
            compare=(tmp_path / "run", tmp_path / "run"),
        )
        for path in (tmp_path / "site").rglob("*"):
            if path.suffix in (".html", ".js", ".css"):
                text = path.read_text(encoding="utf-8")
                assert not re.search(r"(src|href)=['\"]?(https?:)?//", text), path  # no CDN, no remote asset
                assert "fetch(" not in text and "XMLHttpRequest" not in text, path

    def test_chunks_are_bounded(self, toy, tmp_path):
        records = toy.eval_records(CHUNK_SIZE + 5, wrong_every=0)
        toy.write_eval_run(tmp_path / "run", records)
        build_site([tmp_path / "run"], tmp_path / "site")
        chunks = sorted((tmp_path / "site" / "data" / "s").iterdir())
        assert [c.name for c in chunks] == ["00000.js", "00001.js"]
        first = chunks[0].read_text(encoding="utf-8")
        assert first.startswith("window.MS_CHUNK(0, ") and first.count('"k": ') == CHUNK_SIZE

    def test_planted_html_is_escaped_in_data_and_pages(self, toy, tmp_path):
        toy.write_eval_run(tmp_path / "<run>", toy.eval_records(2, planted=True))
        build_site([tmp_path / "<run>"], tmp_path / "site", title="t </title><script>x</script>")
        site = tmp_path / "site"
        chunk = (site / "data" / "s" / "00000.js").read_text(encoding="utf-8")
        assert "<script>" not in chunk and "</div>" not in chunk and "\\u003cscript\\u003e" in chunk
        index_html = (site / "index.html").read_text(encoding="utf-8")
        assert (
            "&lt;/title&gt;&lt;script&gt;x&lt;/script&gt;" in index_html
            and "<script>x</script>" not in index_html
        )
        assert "&lt;run&gt;" in index_html  # the run label in the summary table
        assert "innerHTML" not in (site / "assets" / "app.js").read_text(encoding="utf-8")

    def test_js_json_escapes_script_breakers(self):
        text = js_json({"a": "</script>\u2028&"})
        assert "<" not in text and "&" not in text and "\u2028" not in text
        assert json.loads(text) == {"a": "</script>\u2028&"}

    @pytest.mark.parametrize("size", [0, 501])
    def test_page_size_bounds(self, toy, tmp_path, size):
        toy.write_eval_run(tmp_path / "run", toy.eval_records(1))
        with pytest.raises(UserFacingError, match="page-size"):
            build_site([tmp_path / "run"], tmp_path / "site", page_size=size)

    def test_refuses_to_overwrite_a_foreign_folder(self, toy, tmp_path):
        toy.write_eval_run(tmp_path / "run", toy.eval_records(1))
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "thesis.tex").write_text("precious")
        with pytest.raises(UserFacingError, match="not a viewer site"):
            build_site([tmp_path / "run"], tmp_path / "site")
        build_site([tmp_path / "run"], tmp_path / "site2")
        build_site([tmp_path / "run"], tmp_path / "site2")  # rebuilding its own site is fine
        assert (tmp_path / "site" / "thesis.tex").read_text() == "precious"

    def test_learning_report_page(self, toy, tmp_path):
        toy.write_learn_report(tmp_path / "learn")
        res = build_site([tmp_path / "learn"], tmp_path / "site")
        page = (tmp_path / "site" / "learn.html").read_text(encoding="utf-8")
        assert "learn.html" in res.pages and page.count("<svg") == 3 and "0.620, 0.780" in page

    def test_per_step_summary(self, toy, tmp_path):
        toy.write_verl_dump(tmp_path / "rollouts", steps=3)
        build_site([tmp_path / "rollouts"], tmp_path / "site")
        page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
        assert page.count("<table class='summary steps'>") == 1
        assert len(re.findall(r"<tr><td>[^<]*rollouts</td><td>\d</td>", page)) == 3

    def test_ten_thousand_samples_build_in_seconds(self, toy, tmp_path):
        base = toy.eval_records(100)
        with (tmp_path / "trajectories.jsonl").open("w", encoding="utf-8") as fh:
            for i in range(10_000):
                fh.write(json.dumps({**base[i % 100], "id": f"big:{i}"}) + "\n")
        started = time.perf_counter()
        res = build_site([tmp_path], tmp_path / "site")
        elapsed = time.perf_counter() - started
        assert res.n_samples == 10_000 and len(list((tmp_path / "site" / "data" / "s").iterdir())) == 100
        assert elapsed < 30, f"10k samples took {elapsed:.1f}s"  # measured about 5 s on 2 shared cores


class TestCompare:
    def test_changed_scores_only(self, toy, tmp_path):
        a = toy.write_eval_run(tmp_path / "a", toy.eval_records(6, wrong_every=3))
        b = toy.write_eval_run(tmp_path / "b", toy.eval_records(6, wrong_every=3, seed_shift=1))
        loaded = load_sources([a, b], labels=["A", "B"])
        runs = {
            "A": [s for s in loaded.samples if s.run == "A"],
            "B": [s for s in loaded.samples if s.run == "B"],
        }
        cmp = compare_runs(runs["A"], runs["B"])
        # A is wrong on 0 and 3, B on 2 and 5: four samples changed, two up, two down
        assert cmp["n_common"] == 6 and sorted(r["id"].split(":")[1] for r in cmp["rows"]) == [
            "0",
            "2",
            "3",
            "5",
        ]
        assert sorted(r["d"] > 0 for r in cmp["rows"]) == [False, False, True, True]
        res = build_site([], tmp_path / "site", compare=(a, b))
        assert res.n_changed == 4 and (tmp_path / "site" / "compare.html").is_file()


class TestCli:
    def test_view_builds(self, toy, tmp_path, capsys):
        toy.write_eval_run(tmp_path / "run", toy.eval_records(3))
        assert main(["view", str(tmp_path / "run"), "--out", str(tmp_path / "site")]) == 0
        assert "viewer: 3 samples from 1 run(s)" in capsys.readouterr().out

    @pytest.mark.parametrize(
        "argv, message",
        [
            (["view", "--out", "X"], "nothing to view"),  # no SRC
            (["view", "MISSING"], "--out DIR is required"),
            (["view", "MISSING", "--out", "X"], "no such file"),
        ],
    )
    def test_user_errors_exit_2(self, tmp_path, capsys, monkeypatch, argv, message):
        monkeypatch.chdir(tmp_path)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1

    def test_serve_on_loopback(self, toy, tmp_path):
        import httpx

        from masksearch.viewer.serve import make_server

        toy.write_eval_run(tmp_path / "run", toy.eval_records(2))
        build_site([tmp_path / "run"], tmp_path / "site")
        server = make_server(tmp_path / "site", port=0)
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=5)
            assert r.status_code == 200 and "data/index.js" in r.text
            assert httpx.get(f"http://127.0.0.1:{port}/../../etc/passwd", timeout=5).status_code == 404
        finally:
            server.shutdown()
            server.server_close()


def test_compare_keeps_the_labels_of_the_other_sources(toy, tmp_path):
    a = toy.write_eval_run(tmp_path / "a", toy.eval_records(2))
    toy.write_verl_dump(tmp_path / "demo" / "rollouts", steps=1)
    build_site([tmp_path / "demo"], tmp_path / "site", compare=(a, a))
    runs = _read_js(tmp_path / "site" / "data" / "index.js", "window.MS_INDEX = ")["runs"]
    assert runs == ["demo/rollouts", "A", "B"]


class TestCompareInputs:
    """Issue 21: --compare over two verl dumps said "0 of 0 common samples" and nothing else."""

    @pytest.mark.parametrize(
        "given, got",
        [
            ("verl", "A = {p}/given holds 1 verl dump (<step>.jsonl)"),
            ("sft", "A = {p}/given holds 1 SFT synthesis folder"),
            ("two evals", "A = {p}/given holds 2 eval runs; give one run folder"),  # one run against one run
        ],
    )
    def test_not_one_eval_run_is_a_user_error(self, toy, tmp_path, given, got):
        a = tmp_path / "given"
        if given == "verl":
            toy.write_verl_dump(a, steps=1)
        elif given == "sft":
            toy.write_sft_run(a)
        else:
            for name in ("x", "y"):
                toy.write_eval_run(a / name, toy.eval_records(1))
        b = toy.write_eval_run(tmp_path / "b", toy.eval_records(1))
        with pytest.raises(UserFacingError) as exc:
            build_site([], tmp_path / "site", compare=(a, b))
        message = str(exc.value)
        assert message.startswith("--compare matches the samples of two `masksearch eval` output folders")
        assert "by sample id" in message and got.format(p=tmp_path) in message
        assert not (tmp_path / "site").exists()  # checked before anything is written

    def test_cli_two_verl_dumps_one_line_exit_2(self, toy, tmp_path, capsys):
        a = toy.write_verl_dump(tmp_path / "a" / "rollouts", steps=1)
        b = toy.write_verl_dump(tmp_path / "b" / "rollouts", steps=1)
        assert main(["view", "--compare", str(a), str(b), "--out", str(tmp_path / "site")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("masksearch view: error: --compare matches")
        assert "holds 1 verl dump (<step>.jsonl)" in err

    def test_summary_says_what_compare_matched(self, toy, tmp_path, capsys):
        a = toy.write_eval_run(tmp_path / "a", toy.eval_records(6, wrong_every=3))
        b = toy.write_eval_run(tmp_path / "b", toy.eval_records(6, wrong_every=3, seed_shift=1))
        assert main(["view", "--compare", str(a), str(b), "--out", str(tmp_path / "site")]) == 0
        out = capsys.readouterr().out
        assert "compare: 4 of 6 samples in both runs (matched by sample id) changed score" in out
        page = (tmp_path / "site" / "compare.html").read_text(encoding="utf-8")
        assert "matched by sample id" in page and "cmp-none" not in page

    def test_no_common_id_is_said(self, toy, tmp_path):
        a = toy.write_eval_run(tmp_path / "a", toy.eval_records(2))
        records = toy.eval_records(2)
        for r in records:
            r["id"] = "other:" + r["id"]  # another data set
        b = toy.write_eval_run(tmp_path / "b", records)
        res = build_site([], tmp_path / "site", compare=(a, b))
        assert res.n_common == 0 and "A and B share no sample id" in res.summary_line()
        assert "id='cmp-none'" in (tmp_path / "site" / "compare.html").read_text(encoding="utf-8")


class TestOutIsAFile:
    """Issue 21: --out naming an existing file gave a NotADirectoryError traceback."""

    @pytest.mark.parametrize(
        "out, extra, message",
        [
            ("notes.txt", [], "--out {p}/notes.txt is a file, not a folder"),  # build
            (
                "notes.txt",
                ["--serve"],
                "--out {p}/notes.txt is a file, not a folder",
            ),  # serve an existing site
            ("notes.txt/site", [], "is below a file ({p}/notes.txt), not a folder"),  # a folder under a file
        ],
    )
    def test_one_line_exit_2(self, toy, tmp_path, capsys, out, extra, message):
        (tmp_path / "notes.txt").write_text("precious")
        run = toy.write_eval_run(tmp_path / "run", toy.eval_records(1))
        src = [] if extra else [str(run)]
        assert main(["view", *src, "--out", str(tmp_path / out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message.format(p=tmp_path) in err, err
        assert (tmp_path / "notes.txt").read_text() == "precious"
