"""The viewer shows the RL watchdog's events in the run summary, and the reward's search-health guards.

Events files are written by ``masksearch.recipes.health`` itself (the producer), the verl dump rows
with the guard keys by ``masksearch.rewards.compute_score`` with the guards on.
"""

from __future__ import annotations

import json

import pytest

from masksearch.core.errors import UserFacingError
from masksearch.recipes.health import EVENTS_FILE, Event, append_events
from masksearch.viewer.site import build_site
from masksearch.viewer.sources import load_sources, read_health_events


def _event(step: int, says: str = "entropy collapsed", **detail) -> dict:
    event = Event(
        step=step,
        rule="entropy_collapse",
        action="rollback",
        metric="actor/entropy",
        value=0.2,
        baseline=1.1,
        threshold=0.5,
        bad_steps=3,
        says=says,
        outcome="rollback",
        detail=detail,
    )
    return event.to_json()


def _run_folder(tmp_path, toy, events: list[dict] | None):
    """A run as the recipe leaves it: rollout dumps beside ``checkpoints/`` holding the events file."""
    run = tmp_path / "run"
    toy.write_verl_dump(run / "rollouts", steps=2)
    (run / "checkpoints").mkdir(parents=True)
    if events is not None:
        (run / "checkpoints" / EVENTS_FILE).touch()
        append_events(run / "checkpoints", events)
    return run


class TestSources:
    def test_a_verl_dump_finds_the_events_of_its_run(self, tmp_path, toy):
        run = _run_folder(tmp_path, toy, [_event(7, summary="reloaded the healthy checkpoint of step 4")])
        loaded = load_sources([run / "rollouts"])
        (info,) = loaded.runs.values()
        assert info["health"]["path"] == str(run / "checkpoints" / EVENTS_FILE)
        assert [e["step"] for e in info["health"]["events"]] == [7]

    def test_the_checkpoints_folder_alone_is_a_health_source(self, tmp_path, toy):
        run = _run_folder(tmp_path, toy, [])
        loaded = load_sources([run / "checkpoints"])
        assert not loaded.samples
        (info,) = loaded.runs.values()
        assert info["kind"] == "health" and info["health"]["events"] == []
        loaded = load_sources([run / "checkpoints" / EVENTS_FILE])  # or the file itself
        assert next(iter(loaded.runs.values()))["kind"] == "health"

    def test_no_events_file_no_health_entry(self, tmp_path, toy):
        run = _run_folder(tmp_path, toy, None)
        (info,) = load_sources([run / "rollouts"]).runs.values()
        assert "health" not in info
        with pytest.raises(UserFacingError, match=r"health_events\.jsonl"):
            load_sources([run / "checkpoints"])

    def test_bad_lines_skipped_and_a_replayed_step_keeps_its_last_event(self, tmp_path):
        append_events(tmp_path, [_event(3), _event(2)])
        with (tmp_path / EVENTS_FILE).open("a") as fh:
            fh.write("not json\n" + json.dumps(_event(3, says="again")) + "\n")
        assert [(e["step"], e["says"]) for e in read_health_events(tmp_path / EVENTS_FILE)] == [
            (2, "entropy collapsed"),
            (3, "again"),
        ]

    def test_reward_guard_keys_are_shown_with_the_parts(self, tmp_path):
        from masksearch.rewards import compute_score

        response = "<think>t</think>\n<answer>Paris</answer>"  # no search: closed-book, ungrounded
        result = compute_score("ramp", response, ["Paris"], closed_book="penalty", check_grounding=True)
        assert (result["score"], result["closed_book"], result["ungrounded_answer"]) == (0.5, 1.0, 1.0)
        row = {"input": "system\nx\nuser\nPassage: [mask]\nassistant\n", "output": response,
               "gts": ["Paris"], "step": 1, **result}  # fmt: skip
        (tmp_path / "dump").mkdir()
        (tmp_path / "dump" / "1.jsonl").write_text(json.dumps(row) + "\n")
        (sample,) = load_sources([tmp_path / "dump"]).samples
        assert sample.rewards["closed_book"] == 1.0 and sample.rewards["ungrounded_fills"] == 1
        assert sample.rewards["score"] == 0.5 and sample.rewards_source == "source"


class TestSite:
    def test_run_summary_lists_the_events_escaped(self, tmp_path, toy):
        planted = _event(9, says=toy.PLANTED, summary="reloaded " + toy.PLANTED)
        run = _run_folder(tmp_path, toy, [_event(7), planted])
        build_site([run / "rollouts"], tmp_path / "site")
        html = (tmp_path / "site" / "index.html").read_text()
        assert "2 watchdog event(s)" in html and "table class='summary health'" in html
        assert html.count("<tr><td>7</td><td>entropy_collapse</td><td>rollback</td>") == 1
        assert "<script>window.__pwned" not in html and "&lt;script&gt;" in html

    def test_zero_events_is_said(self, tmp_path, toy):
        run = _run_folder(tmp_path, toy, [])
        build_site([run], tmp_path / "site")  # the run folder: the dump and, three levels down, nothing else
        html = (tmp_path / "site" / "index.html").read_text()
        assert "no watchdog events" in html

    def test_a_health_only_source_builds_a_site(self, tmp_path, toy):
        run = _run_folder(tmp_path, toy, [_event(4)])
        build_site([run / "checkpoints"], tmp_path / "site")
        assert "1 watchdog event(s)" in (tmp_path / "site" / "index.html").read_text()

    def test_learning_report_lists_the_rl_stage_events(self, tmp_path, toy):
        report = toy.write_learn_report(tmp_path / "learn") / "report.json"
        data = json.loads(report.read_text())
        for events, expected in (
            ([], "no watchdog events"),
            ([_event(5)], "1 watchdog event(s)"),
            (None, "off"),
        ):
            data["health_events"] = events
            report.write_text(json.dumps(data))
            build_site([report], tmp_path / "site", overwrite=True)
            html = (tmp_path / "site" / "learn.html").read_text()
            assert "Training health" in html and expected in html, expected


def test_rendered_run_summary_shows_the_events_and_runs_nothing_planted(browser, tmp_path, toy):
    """As a person sees it: headless Chromium from disk, the events table counted, a screenshot."""
    import re

    planted = _event(9, says=toy.PLANTED, summary="reloaded " + toy.PLANTED)
    run = _run_folder(
        tmp_path, toy, [_event(7, summary="reloaded the healthy checkpoint of step 4"), planted]
    )
    build_site([run / "rollouts"], tmp_path / "site")
    url = (tmp_path / "site" / "index.html").resolve().as_uri()
    rendered = browser.dump_dom(url)
    assert 'data-ready="1"' in rendered.dom and rendered.console_errors() == []
    table = re.search(r"<table class=\"summary health\">.*?<tbody>(.*?)</tbody>", rendered.dom, re.S).group(1)
    assert table.count("<tr>") == 2 and "reloaded the healthy checkpoint of step 4" in table
    assert "window.__pwned" not in re.sub(r"&lt;script&gt;window\.__pwned", "", rendered.dom)
    shot = browser.screenshot(url, tmp_path / "viewer-health.png")
    assert shot.stat().st_size > 10_000


def test_the_viewer_knows_every_guard_key():
    from masksearch.rewards.search_guard import GUARD_KEYS
    from masksearch.viewer import sources

    assert sources._GUARD_KEYS == GUARD_KEYS
