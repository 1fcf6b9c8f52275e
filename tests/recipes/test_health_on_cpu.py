"""The training-health watchdog's pure parts (no verl): settings, rules, baselines, events, kept checkpoints.

The trainer glue (``health_guard``) is tested in ``test_health_guard_on_cpu.py``; real runs in
``test_health_e2e_on_cpu.py``.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.recipes import health
from masksearch.recipes.health import (
    RULES,
    HealthSettings,
    HealthyCheckpoints,
    RuleSettings,
    Watchdog,
    append_events,
    event_line,
    read_events,
)
from masksearch.recipes.health_checkpoints import CheckpointStore, link_tree, scale_lr_files

REPO = Path(__file__).resolve().parents[2]


def _dog(**rules) -> Watchdog:
    """A watchdog where only the given rules are on (``name={...}``), the others off."""
    values = {spec.name: {"action": "off"} for spec in RULES}
    values.update(rules)
    return Watchdog(HealthSettings.from_mapping(values))


def _feed(dog: Watchdog, metric: str, values, start: int = 1):
    """Observe ``values`` of one metric at consecutive steps; the list of observations."""
    return [dog.observe(step, {metric: v}) for step, v in enumerate(values, start)]


class TestSettings:
    def test_defaults_only_observe_except_nonfinite(self):
        s = HealthSettings()
        assert s.enable and not s.wants_rollback()
        assert {spec.name: s.rule(spec.name).action for spec in RULES} == {
            **{spec.name: "warn" for spec in RULES},
            "nonfinite": "stop",
        }

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"grad_norm": {}}, "Unknown masksearch.health key(s) ['grad_norm']"),  # a typo of a rule
            ({"format_drop": {"patiance": 2}}, "Unknown masksearch.health.format_drop key(s) ['patiance']"),
            ({"format_drop": {"action": "explode"}}, "choose one of off, warn, stop, rollback"),
            ({"format_drop": {"window": 0}}, "window must be an int >= 1"),
            ({"format_drop": {"patience": 1.5}}, "patience must be an int >= 1"),
            ({"format_drop": {"threshold": "high"}}, "threshold must be a number"),
            ({"format_drop": {"threshold": -1}}, "threshold must be a finite number >= 0"),
            ({"format_drop": "stop"}, "must be a group"),
            ({"lr_factor": 0}, "lr_factor must be in (0, 1]"),
            ({"lr_factor": 2}, "lr_factor must be in (0, 1]"),
            ({"max_rollbacks": -1}, "max_rollbacks must be an int >= 0"),
            ({"enable": "yes"}, "enable must be true or false"),
        ],
    )
    def test_bad_settings_are_one_line_errors(self, values, message):
        with pytest.raises(ValueError) as info:
            HealthSettings.from_mapping(values)
        assert message in str(info.value) and "\n" not in str(info.value)

    def test_a_rule_group_may_give_some_keys(self):
        s = HealthSettings.from_mapping({"grad_norm_spike": {"action": "rollback", "threshold": 5}})
        assert s.grad_norm_spike == RuleSettings(action="rollback", threshold=5.0, window=10, patience=2)
        assert s.wants_rollback()
        assert not HealthSettings.from_mapping(
            {"enable": False, "grad_norm_spike": {"action": "rollback"}}
        ).wants_rollback()

    def test_recipe_yaml_lists_the_dataclass_defaults(self):
        """One definition per setting: the recipe's composed config lists every key, with the
        dataclass's values (the YAML itself repeats none of them)."""
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        from masksearch.recipes.dapo_ramp.main import CONFIG_DIR

        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            listed = OmegaConf.to_container(compose("dapo_ramp").masksearch.health)
        assert HealthSettings.from_mapping(listed) == HealthSettings()
        assert set(listed) == {f for f in HealthSettings.__dataclass_fields__}
        assert "health" not in OmegaConf.load(CONFIG_DIR / "dapo_ramp.yaml").masksearch

    def test_no_verl_import(self):
        """The rule logic and the kept checkpoints import no verl (and no recipe module that does)."""
        for name in ("health.py", "health_checkpoints.py"):
            tree = ast.parse((REPO / "recipes" / name).read_text())
            imported = {
                (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names
            }
            assert not {m for m in imported if m.split(".")[0] in ("verl", "transfer_queue", "ray")}, name
            assert not {m for m in imported if m.startswith("masksearch.recipes") and "health" not in m}, name


class TestRules:
    def test_relative_rule_arms_after_its_window_then_trips_at_patience(self):
        dog = _dog(entropy_collapse={"action": "warn", "window": 3, "patience": 2, "threshold": 0.5})
        obs = _feed(dog, "actor/entropy", [1.0, 1.0, 0.1, 1.0, 0.4, 0.3])
        # steps 1-2: not armed (a drop to 0.1 at step 3 is with a baseline of 2 values: still not armed)
        assert [o.clean for o in obs] == [True, True, True, True, False, False]
        assert [len(o.events) for o in obs] == [0, 0, 0, 0, 0, 1]
        event = obs[-1].events[0]
        assert (event.step, event.rule, event.metric, event.value, event.bad_steps) == (
            6,
            "entropy_collapse",
            "actor/entropy",
            0.3,
            2,
        )
        assert event.baseline == 1.0  # median of the healthy values 1, 1, 0.1 -> 1; 0.4 never entered
        assert "actor/entropy=0.3 vs baseline 1" in event.line

    def test_a_good_step_resets_the_count_and_a_missing_metric_does_neither(self):
        dog = _dog(format_drop={"window": 2, "patience": 2})
        _feed(dog, "reward/format_ok/mean", [1.0, 1.0])
        assert dog.observe(3, {"reward/format_ok/mean": 0.1}).metrics["health/format_drop/bad_steps"] == 1
        assert dog.observe(4, {"other": 1.0}).metrics["health/format_drop/bad_steps"] == 1  # no signal
        assert dog.observe(5, {"reward/format_ok/mean": 0.9}).metrics["health/format_drop/bad_steps"] == 0
        assert not dog.observe(6, {"reward/format_ok/mean": 0.1}).events  # 1 of 2 again

    def test_a_value_bad_for_one_rule_enters_no_baseline_of_its_metric(self):
        """The explosion that trips entropy_explosion must not raise entropy_collapse's baseline."""
        dog = _dog(
            entropy_collapse={"window": 2, "patience": 1},
            entropy_explosion={"window": 2, "patience": 1, "action": "rollback"},
        )
        _feed(dog, "actor/entropy", [10.0, 10.0])
        tripped = dog.observe(3, {"actor/entropy": 59.0})
        assert [e.rule for e in tripped.events] == ["entropy_explosion"]
        after = dog.observe(4, {"actor/entropy": 11.0})
        # the median of 10 and 11 (with 59 in it, it would be 35 and 11 a "collapse")
        assert not after.events and after.metrics["health/entropy_collapse/baseline"] == 10.5

    def test_entropy_falls_back_to_the_rollout_log_ppl_on_cpu(self):
        dog = _dog(entropy_explosion={"window": 1, "patience": 1})
        _feed(dog, "actor/rollout_corr/training_log_ppl", [10.0])
        event = dog.observe(2, {"actor/rollout_corr/training_log_ppl": 30.0}).events[0]
        assert event.metric == "actor/rollout_corr/training_log_ppl"

    def test_absolute_rules_need_no_baseline(self):
        dog = _dog(length_at_budget={"threshold": 0.5, "patience": 1, "action": "stop"})
        event = dog.observe(1, {"response_length/clip_ratio": 0.9}).events[0]
        assert (event.rule, event.action, event.baseline) == ("length_at_budget", "stop", None)
        assert "no baseline yet" in event.line

    def test_grad_norm_zero_is_no_signal(self):
        """A step whose groups all got the same reward has grad norm 0: not a baseline value."""
        dog = _dog(grad_norm_spike={"window": 2, "patience": 1})
        _feed(dog, "actor/grad_norm", [0.0, 0.0, 1.0, 1.0])
        assert dog.observe(5, {"actor/grad_norm": 0.0}).metrics["health/grad_norm_spike/baseline"] == 1.0
        assert dog.observe(6, {"actor/grad_norm": 50.0}).events[0].rule == "grad_norm_spike"

    def test_search_collapse_needs_a_run_that_searched(self):
        dog = _dog(search_collapse={"window": 2, "patience": 1})
        assert not any(o.events for o in _feed(dog, "env/searches_per_sample", [0.0, 0.0, 0.0]))
        dog = _dog(search_collapse={"window": 2, "patience": 1})
        obs = _feed(dog, "env/searches_per_sample", [1.5, 1.2, 0.01])
        assert obs[-1].events[0].says == "searching stopped"

    @pytest.mark.parametrize(
        "bad",
        [
            float("nan"),  # a NaN loss
            float("inf"),  # an infinite log-ppl
            pytest.param("torch-nan", id="torch-scalar-nan"),
            pytest.param("numpy-inf", id="numpy-scalar-inf"),
        ],
    )
    def test_nonfinite_values_are_caught_at_once(self, bad):
        import numpy as np
        import torch

        value = {"torch-nan": torch.tensor(float("nan")), "numpy-inf": np.float32("inf")}.get(bad, bad)
        dog = Watchdog(HealthSettings())
        obs = dog.observe(1, {"actor/grad_norm": 1.0, "actor/pg_loss": value, "actor/entropy": 2.0})
        assert [(e.rule, e.action, e.metric) for e in obs.events] == [("nonfinite", "stop", "actor/pg_loss")]
        assert not obs.clean and obs.action == "stop"
        assert json.loads(json.dumps(obs.events[0].to_json()))["value"] in ("nan", "inf")  # valid JSON

    def test_warn_relearns_its_baseline_so_a_lasting_shift_is_reported_once(self):
        dog = _dog(entropy_collapse={"window": 2, "patience": 1})
        obs = _feed(dog, "actor/entropy", [1.0, 1.0, 0.2, 0.2, 0.2, 0.2])
        assert [len(o.events) for o in obs] == [0, 0, 1, 0, 0, 0]

    def test_most_severe_action_first(self):
        dog = _dog(
            format_drop={"window": 1, "patience": 1, "action": "warn"},
            grad_norm_spike={"window": 1, "patience": 1, "action": "rollback"},
        )
        dog.observe(1, {"reward/format_ok/mean": 1.0, "actor/grad_norm": 1.0})
        obs = dog.observe(2, {"reward/format_ok/mean": 0.0, "actor/grad_norm": 100.0})
        assert [e.action for e in obs.events] == ["rollback", "warn"] and obs.action == "rollback"

    def test_state_round_trips_for_resume(self):
        dog = _dog(format_drop={"window": 3, "patience": 2})
        _feed(dog, "reward/format_ok/mean", [1.0, 0.9, 0.8, 0.1])
        dog.after_rollback(0.5)
        copy = _dog(format_drop={"window": 3, "patience": 2})
        copy.load_state_dict(json.loads(json.dumps(dog.state_dict())))
        assert copy.state_dict() == dog.state_dict() and copy.lr_scale == 0.5 and copy.rollbacks == 1


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=40),
    window=st.integers(1, 6),
    patience=st.integers(1, 4),
    threshold=st.floats(0.05, 0.95),
)
def test_drop_rule_matches_a_reference_model(values, window, patience, threshold):
    """An independent re-statement of a ``drop`` rule: median of the last ``window`` good values,
    armed once full; a bad value counts, a good one resets and joins the baseline; trip at patience."""
    dog = _dog(format_drop={"window": window, "patience": patience, "threshold": threshold})
    good: list[float] = []
    count = 0
    for step, value in enumerate(values, 1):
        base = sorted(good[-window:]) if len(good) >= window else None
        median = None
        if base is not None:
            mid = len(base) // 2
            median = base[mid] if len(base) % 2 else (base[mid - 1] + base[mid]) / 2
        bad = median is not None and median > 0 and value < threshold * median
        count = count + 1 if bad else 0
        expected_trip = bad and count >= patience
        if not bad:
            good.append(value)
        obs = dog.observe(step, {"reward/format_ok/mean": value})
        assert bool(obs.events) == expected_trip, (step, value, median)
        if expected_trip:
            assert obs.events[0].bad_steps == patience and obs.events[0].baseline == pytest.approx(median)
            count = 0
            good.clear()  # warn re-learns
        assert obs.metrics["health/format_drop/bad_steps"] == count


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=30))
def test_healthy_checkpoint_is_always_a_saved_clean_step_followed_by_a_clean_step(steps):
    keep = HealthyCheckpoints()
    history: dict[int, tuple[bool, bool]] = {}
    for step, (clean, saved) in enumerate(steps, 1):
        history[step] = (clean, saved)
        keep.on_step(step, clean=clean, saved=saved)
        if keep.healthy is not None:
            h = keep.healthy
            assert history[h] == (True, True) and h + 1 in history and history[h + 1][0]
        if keep.candidate is not None:
            assert keep.candidate == step and history[step] == (True, True)


class TestEventsFile:
    def test_lines_read_back_and_a_replayed_step_keeps_its_last_event(self, tmp_path):
        append_events(tmp_path, [{"step": 4, "rule": "format_drop", "outcome": "warn"}])
        (tmp_path / health.EVENTS_FILE).open("a").write("{broken\n")
        append_events(
            tmp_path, [{"step": 4, "rule": "format_drop", "outcome": "stop"}, {"step": 2, "rule": "x"}]
        )
        assert [(e["step"], e.get("outcome")) for e in read_events(tmp_path)] == [(2, None), (4, "stop")]
        assert read_events(tmp_path / "none") is None  # no file: no watchdog (an empty file: no events)

    def test_the_viewer_reads_the_same_file_name(self):
        from masksearch.viewer.sources import HEALTH_EVENTS_FILE

        assert HEALTH_EVENTS_FILE == health.EVENTS_FILE

    def test_event_line_names_metric_value_and_baseline(self):
        line = event_line(
            {"step": 3, "rule": "r", "action": "rollback", "outcome": "rollback", "metric": "m", "value": "nan",
             "baseline": 1.5, "threshold": 2, "bad_steps": 1, "says": "s", "detail": {"summary": "reloaded step 1"}}
        )  # fmt: skip
        assert line == (
            "masksearch: health: rollback at step 3: r (s): m=nan vs baseline 1.5 (threshold 2, 1 bad steps); "
            "reloaded step 1"
        )


class TestKeptCheckpoints:
    @staticmethod
    def _verl_checkpoint(run: Path, step: int, lr: float) -> Path:
        """What verl's FSDP checkpoint of one rank holds, as far as the lr goes."""
        import torch

        actor = run / f"global_step_{step}" / "actor"
        actor.mkdir(parents=True)
        torch.save({"w": torch.full((2,), float(step))}, actor / "model_world_size_1_rank_0.pt")
        optim = {"state": {}, "param_groups": [{"lr": lr, "initial_lr": lr, "params": [0]}]}
        torch.save(optim, actor / "optim_world_size_1_rank_0.pt")
        sched = {"base_lrs": [lr], "_last_lr": [lr], "last_epoch": step}
        torch.save({"lr_scheduler": sched, "rng": None}, actor / "extra_state_world_size_1_rank_0.pt")
        torch.save({"samples": step}, run / f"global_step_{step}" / "data.pt")
        return actor

    def test_kept_copy_survives_verls_rotation_and_rollback_scales_the_lr(self, tmp_path):
        import shutil

        import torch

        store = CheckpointStore(tmp_path)
        self._verl_checkpoint(tmp_path, 3, 1e-3)
        store.stage(3, lr_scale=1.0)
        assert store.promote() == 3 and store.step("candidate") is None
        shutil.rmtree(tmp_path / "global_step_3" / "actor")  # what max_actor_ckpt_to_keep=1 does
        folder, lr = store.prepare_rollback(lr_scale=0.25)
        assert folder == tmp_path / "health" / "rollback" / "global_step_3" and lr == pytest.approx(2.5e-4)
        model = torch.load(folder / "actor" / "model_world_size_1_rank_0.pt")
        assert model["w"].tolist() == [3.0, 3.0]
        optim = torch.load(folder / "actor" / "optim_world_size_1_rank_0.pt")
        sched = torch.load(folder / "actor" / "extra_state_world_size_1_rank_0.pt")["lr_scheduler"]
        assert (
            optim["param_groups"][0]["lr"] == optim["param_groups"][0]["initial_lr"] == pytest.approx(2.5e-4)
        )
        assert sched["base_lrs"] == sched["_last_lr"] == [pytest.approx(2.5e-4)]
        # the healthy copy itself is untouched (the rollback copy's files are new, not written through links)
        healthy = torch.load(
            tmp_path / "health" / "healthy" / "global_step_3" / "actor" / "optim_world_size_1_rank_0.pt"
        )
        assert healthy["param_groups"][0]["lr"] == pytest.approx(1e-3)

    def test_a_second_rollback_scales_relative_to_the_kept_checkpoints_own_scale(self, tmp_path):
        self._verl_checkpoint(tmp_path, 5, 5e-4)  # saved after a first rollback (scale 0.5)
        store = CheckpointStore(tmp_path)
        store.stage(5, lr_scale=0.5)
        store.promote()
        _, lr = store.prepare_rollback(lr_scale=0.25)
        assert lr == pytest.approx(2.5e-4)

    def test_resume_to_an_earlier_step_drops_later_copies(self, tmp_path):
        store = CheckpointStore(tmp_path)
        for step in (2, 4):
            self._verl_checkpoint(tmp_path, step, 1e-3)
        store.stage(2, 1.0)
        store.promote()
        store.stage(4, 1.0)
        store.drop_after(3)
        assert (store.step("healthy"), store.step("candidate")) == (2, None)

    def test_link_tree_and_scale_on_missing_files(self, tmp_path):
        (tmp_path / "a").mkdir()
        link_tree(tmp_path / "a", tmp_path / "b")
        assert (tmp_path / "b").is_dir() and scale_lr_files(tmp_path / "b", 0.5) is None
        assert math.isclose(HealthSettings().lr_factor, 0.5)


@pytest.mark.parametrize("module", ["masksearch.recipes.health", "masksearch.recipes.health_checkpoints"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
