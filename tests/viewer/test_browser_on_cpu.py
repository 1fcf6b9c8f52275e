"""The built pages as a person sees them: rendered by headless Chromium from disk (file://).

Each test builds a small site, loads a page with ``--dump-dom`` after its scripts ran
(``--virtual-time-budget``) and counts what must be there. Errors are caught twice: the page's
own collector (``<pre id="ms-errors" data-count>``) and Chromium's console log on stderr.
Screenshots go to ``tmp_path`` (and to ``$MASKSEARCH_VIEWER_SHOTS`` when set, for the closing note).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from masksearch.viewer.site import build_site


def _url(path: Path, fragment: str = "") -> str:
    return path.resolve().as_uri() + (f"#{fragment}" if fragment else "")


def _ready(r) -> None:
    assert 'data-ready="1"' in r.dom, r.dom[-2000:]
    assert re.search(r'<pre id="ms-errors" data-count="0"', r.dom), re.findall(
        r'<pre id="ms-errors".*?</pre>', r.dom, re.S
    )
    assert r.console_errors() == [], r.console_errors()


def _body_attr(dom: str, name: str) -> int:
    return int(re.search(rf'<body[^>]* {name}="(\d+)"', dom).group(1))


def _table_rows(dom: str) -> int:
    body = re.search(r'<table id="rows".*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    return body.count('<tr data-k="')


def _keep_shot(path: Path) -> None:
    target = os.environ.get("MASKSEARCH_VIEWER_SHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.fixture
def eval_site(toy, tmp_path):
    toy.write_eval_run(tmp_path / "run", toy.eval_records(7, planted=True))
    build_site([tmp_path / "run"], tmp_path / "site")
    return tmp_path / "site"


class TestIndex:
    def test_n_rows_for_n_samples_and_a_screenshot(self, browser, eval_site, tmp_path):
        r = browser.dump_dom(_url(eval_site / "index.html"))
        _ready(r)
        assert _table_rows(r.dom) == 7 and _body_attr(r.dom, "data-rows") == 7
        assert '<span id="count">7 samples</span>' in r.dom
        shot = browser.screenshot(_url(eval_site / "index.html"), tmp_path / "viewer-index.png")
        assert shot.stat().st_size > 20_000  # a real picture, not a blank page
        _keep_shot(shot)

    @pytest.mark.parametrize(
        "fragment, rows",
        [
            ("missed=1", 3),  # answer in a retrieved document but not given: samples 0, 3, 6
            ("ds=toyqa", 3),  # QA samples 1, 3, 5
            ("acc=1", 4),  # right answers
            ("ds=toyqa&acc=0", 1),  # filters combine: sample 3
            ("q=glass%20orchard", 2),  # text search in the prompt preview (samples 1 and 5)
        ],
    )
    def test_a_filter_reduces_the_rows(self, browser, eval_site, fragment, rows):
        r = browser.dump_dom(_url(eval_site / "index.html", fragment))
        _ready(r)
        assert _table_rows(r.dom) == rows and f"{rows} of 7 samples" in r.dom

    def test_sorting_by_score(self, browser, eval_site):
        r = browser.dump_dom(_url(eval_site / "index.html", "sort=score&dir=asc"))
        _ready(r)
        keys = [int(k) for k in re.findall(r'<tr data-k="(\d+)"', r.dom)]
        assert keys[:3] == [0, 3, 6] and 'class="sorted-asc" data-col="score"' in r.dom.replace(
            'data-col="score" class="sorted-asc"', 'class="sorted-asc" data-col="score"'
        )

    def test_large_index_is_paged(self, browser, toy, tmp_path):
        toy.write_eval_run(tmp_path / "run", toy.eval_records(1200))
        build_site([tmp_path / "run"], tmp_path / "site", page_size=100)
        r = browser.dump_dom(_url(tmp_path / "site" / "index.html", "page=3"))
        _ready(r)
        assert _table_rows(r.dom) == 100 and "page 3 / 12" in r.dom and 'data-k="200"' in r.dom


class TestSample:
    def test_query_and_highlighted_gold_span(self, browser, eval_site, tmp_path):
        r = browser.dump_dom(_url(eval_site / "sample.html", "1"))  # QA sample
        _ready(r)
        assert (
            '<div class="block search"><div class="kind">search</div><div class="pre">Who wrote The Glass Orchard?</div>'
            in r.dom
        )
        doc = re.search(
            r'<div class="doc"><span class="title">Doc 1 · The Glass Orchard</span>.*?</div>', r.dom, re.S
        ).group(0)
        assert '<mark class="gold g0" title="gold span 1">Tomas Verhoeven</mark>' in doc
        for key in ("score", "acc", "answer_score", "format_ok", "format_reason", "num_searches"):
            assert f"<td>{key}</td>" in r.dom
        assert "<td>num_retrieval_errors</td>" in r.dom and "<td>hit_turn_budget</td>" in r.dom

    def test_ramp_masks_and_each_span(self, browser, eval_site, tmp_path):
        r = browser.dump_dom(_url(eval_site / "sample.html", "2"))  # 1-mask RAMP, answered right
        _ready(r)
        assert r.dom.count('<mark class="mask">[mask]</mark>') >= 1
        assert '<mark class="gold g0" title="gold span 1">Marrowgate</mark>' in r.dom
        r = browser.dump_dom(_url(eval_site / "sample.html", "6"))  # 2 masks (two colours), answered wrong
        assert (
            'title="gold span 1">Elena Marchetti</mark>' in r.dom
            and 'class="gold g1" title="gold span 2">1921</mark>' in r.dom
        )
        shot = browser.screenshot(
            _url(eval_site / "sample.html", "6"), tmp_path / "viewer-sample.png", size="1400,1300"
        )
        assert shot.stat().st_size > 20_000
        _keep_shot(shot)

    def test_planted_markup_renders_as_text(self, browser, eval_site):
        r = browser.dump_dom(_url(eval_site / "sample.html", "0"))
        _ready(r)
        assert (
            "Nothing here.&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;/div&gt;&lt;b&gt;bold?&lt;/b&gt;"
            in r.dom
        )
        assert "<b>bold?</b>" not in r.dom and "__pwned=1</script>" not in r.dom
        # the scripts of the page are the error collector, meta, app and the loaded chunk only
        assert len(re.findall(r"<script\b", r.dom)) == 4

    def test_unknown_sample_is_a_message(self, browser, eval_site):
        r = browser.dump_dom(_url(eval_site / "sample.html", "99"))
        _ready(r)
        assert "no sample #99 (there are 7)" in r.dom


class TestOtherPages:
    def test_follow_one_prompt_across_steps(self, browser, toy, tmp_path):
        from masksearch.viewer.sources import load_sources

        toy.write_verl_dump(tmp_path / "rollouts", steps=3, prompts=2, n=2)
        build_site([tmp_path / "rollouts"], tmp_path / "site")
        group = load_sources([tmp_path / "rollouts"]).samples[0].group
        r = browser.dump_dom(_url(tmp_path / "site" / "index.html", f"g={group}&sort=step"))
        _ready(r)
        assert _table_rows(r.dom) == 6 and "6 of 12 samples" in r.dom  # 3 steps x 2 rollouts
        steps = re.findall(r'title="follow this prompt across steps" class="follow">(\d+)</a>', r.dom)
        assert steps == ["1", "1", "2", "2", "3", "3"]
        r = browser.dump_dom(_url(tmp_path / "site" / "sample.html", "0"))
        _ready(r)
        assert r.dom.count("<tr class=") == 6  # same prompt elsewhere: 6 samples listed

    def test_compare_and_learn_pages(self, browser, toy, tmp_path):
        a = toy.write_eval_run(tmp_path / "a", toy.eval_records(6, wrong_every=3))
        b = toy.write_eval_run(tmp_path / "b", toy.eval_records(6, wrong_every=3, seed_shift=1))
        toy.write_learn_report(tmp_path / "learn")
        build_site([tmp_path / "learn"], tmp_path / "site", compare=(a, b))
        r = browser.dump_dom(_url(tmp_path / "site" / "compare.html"))
        _ready(r)
        assert _body_attr(r.dom, "data-rows") == 4 and "4 of 6 common samples changed score" in r.dom
        r = browser.dump_dom(_url(tmp_path / "site" / "learn.html"))
        assert re.search(r'<pre id="ms-errors" data-count="0"', r.dom) and r.dom.count("<svg") == 3


def test_a_broken_page_is_caught(browser, toy, tmp_path):
    """The checks above can fail: a truncated data file shows in the collector and the console log."""
    toy.write_eval_run(tmp_path / "run", toy.eval_records(2))
    build_site([tmp_path / "run"], tmp_path / "site")
    (tmp_path / "site" / "data" / "index.js").write_text("window.MS_INDEX = {", encoding="utf-8")
    r = browser.dump_dom(_url(tmp_path / "site" / "index.html"))
    assert 'data-count="0"' not in r.dom and "did not load" in r.dom
    assert any("SyntaxError" in line for line in r.console_errors())


def test_gold_marks_whole_words_case_insensitively(browser, toy, tmp_path):
    records = toy.eval_records(4)
    records[3]["golds"] = ["ostra", "Ost"]  # "Ost" is inside "Ostra" only: not a match of its own
    toy.write_eval_run(tmp_path / "run", records)
    build_site([tmp_path / "run"], tmp_path / "site")
    r = browser.dump_dom(_url(tmp_path / "site" / "sample.html", "3"))
    _ready(r)
    doc = re.search(
        r'<div class="doc"><span class="title">Doc 1 · Castelmoor</span>.*?</div>', r.dom, re.S
    ).group(0)
    assert re.findall(r"<mark [^>]*>([^<]*)</mark>", doc) == ["Ostra"]


def test_failed_search_is_marked(browser, toy, tmp_path):
    records = toy.eval_records(2)
    traj = records[1]["trajectory"]
    start = traj["response_text"].index("<information>") + len("<information>")
    end = traj["response_text"].index("</information>")
    traj["response_text"] = (
        traj["response_text"][:start] + "Search failed: timeout after 10s" + traj["response_text"][end:]
    )
    toy.write_eval_run(tmp_path / "run", records)
    build_site([tmp_path / "run"], tmp_path / "site")
    r = browser.dump_dom(_url(tmp_path / "site" / "sample.html", "1"))
    _ready(r)
    assert '<div class="block information failed">' in r.dom and "Search failed: timeout after 10s" in r.dom


# --------------------------------------------------------------------------- layout (issue 21)
# Run in the page after it rendered: every cell of a table's last column stays inside its box and
# the viewport, every element of the sample page's two columns inside its column, and the page
# itself never scrolls sideways. The result goes to <pre id="probe" data-bad="N">JSON</pre>.
_PROBE_JS = r"""
(function () {
  function box(e) { return e.getBoundingClientRect(); }
  function check() {
    if (document.body.getAttribute('data-ready') !== '1') { setTimeout(check, 20); return; }
    var vw = document.documentElement.clientWidth, bad = [], cells = 0;
    document.querySelectorAll('.table-wrap').forEach(function (w) {
      var t = w.firstElementChild, name = t.id || t.className;
      if (w.scrollWidth > w.clientWidth + 1) bad.push(['table scrolls', name, w.scrollWidth, w.clientWidth]);
      w.querySelectorAll('tr > :last-child').forEach(function (c) {
        cells++;
        var right = box(c).right, limit = Math.min(box(w).right, vw);
        if (right > limit + 1) bad.push(['last column', name, c.textContent.slice(0, 40), right, limit]);
      });
    });
    document.querySelectorAll('.grid > *').forEach(function (col) {
      var limit = Math.min(box(col).right, vw);
      col.querySelectorAll('*').forEach(function (e) {
        cells++;
        if (box(e).right > limit + 1) bad.push(['column', col.className, e.tagName, e.textContent.slice(0, 40), box(e).right, limit]);
      });
    });
    if (document.documentElement.scrollWidth > vw) bad.push(['page scrolls', document.documentElement.scrollWidth, vw]);
    var pre = document.createElement('pre');
    pre.id = 'probe'; pre.setAttribute('data-bad', String(bad.length)); pre.setAttribute('data-checked', String(cells));
    pre.textContent = JSON.stringify({ width: vw, bad: bad });
    document.body.appendChild(pre);
  }
  check();
})();
"""


def _probe(browser, site: Path, page: str, fragment: str, width: int) -> dict:
    """Load ``page`` (a copy with the probe script) at ``width`` px and return the probe's verdict."""
    import html
    import json

    (site / "probe.js").write_text(_PROBE_JS, encoding="utf-8")
    probed = site / page.replace(".html", "-probe.html")
    text = (site / page).read_text(encoding="utf-8")
    probed.write_text(text.replace("</body>", "<script src='probe.js'></script></body>"), encoding="utf-8")
    proc = browser._run(
        [f"--window-size={width},1000", "--virtual-time-budget=3000", "--dump-dom", _url(probed, fragment)],
        60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="probe" data-bad="(\d+)" data-checked="(\d+)">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stdout[-2000:]
    verdict = json.loads(html.unescape(m.group(3)))
    verdict["checked"] = int(m.group(2))
    return verdict


@pytest.fixture(scope="module")
def wide_site(toy, tmp_path_factory) -> Path:
    """Everything that made a column too wide: two runs (every index column shown), a long id, a
    long answer and a data source without spaces, a DAPO rollout with its score parts, compare."""
    root = tmp_path_factory.mktemp("wide")
    records = toy.eval_records(4)
    records[1]["id"] = "hotpotqa:validation:" + "x" * 120
    records[1]["answer"] = "A" * 200
    records[3]["data_source"] = records[3]["dataset"] = "2wikimultihopqa_dev_full_split"
    a = toy.write_eval_run(root / "a", records)
    b = toy.write_eval_run(root / "b", toy.eval_records(4, seed_shift=1))
    toy.write_dapo_dump(root / "rollouts", [256, 192, 100], right=[False, True, True], extras=False)
    res = build_site([a, root / "rollouts"], root / "site", compare=(a, b))
    assert res.n_samples == 4 + 3 + 4 + 4  # a, the rollouts (keys 4..6), then A (= a) and B
    return root / "site"


class TestLayout:
    """Issue 21: the last column was cut off at 1400 px (the index needed 1487 px whatever the
    window), and a long id pushed the sample page wider than a 1000 px window."""

    @pytest.mark.parametrize("width", [1600, 1000])
    @pytest.mark.parametrize(
        "page, fragment",
        [
            ("index.html", ""),  # every column, long id / answer / data source
            ("sample.html", "1"),  # the long id in the title, the long answer in the side column
            ("sample.html", "4"),  # a DAPO rollout: the score and its parts in the side column
            ("compare.html", ""),
        ],
    )
    def test_no_column_is_clipped(self, browser, wide_site, page, fragment, width):
        verdict = _probe(browser, wide_site, page, fragment, width)
        assert verdict["width"] == width  # the window we asked for (scrollbars are hidden)
        assert verdict["checked"] >= 4 and verdict["bad"] == [], verdict["bad"][:5]

    def test_narrow_window_scrolls_the_table_not_the_page(self, browser, wide_site):
        verdict = _probe(browser, wide_site, "index.html", "", 700)
        assert verdict["bad"] and {b[0] for b in verdict["bad"]} <= {"table scrolls", "last column"}

    def test_score_parts_and_screenshots(self, browser, wide_site, tmp_path):
        r = browser.dump_dom(_url(wide_site / "sample.html", "4"))  # the row: -1, parts 0
        _ready(r)
        rows = re.findall(r"<tr(?: class=\"([^\"]*)\")?><td[^>]*>([^<]*)</td><td>(.*?)</td></tr>", r.dom)
        table = {key: (cls, value) for cls, key, value in rows}
        assert table["score"][1] == "-1" and table["= reward_fn_score"] == ("part reward_fn_score", "0")
        assert table["+ unexplained"] == ("part unexplained", "-1")
        assert 'id="unexplained-note"' in r.dom and "overlong_buffer_cfg.log" in r.dom
        for name, url, size in (
            ("viewer-index-1000.png", _url(wide_site / "index.html"), "1000,1000"),
            ("viewer-dapo-sample-1000.png", _url(wide_site / "sample.html", "4"), "1000,1400"),
        ):
            shot = browser.screenshot(url, tmp_path / name, size=size)
            assert shot.stat().st_size > 20_000
            _keep_shot(shot)
