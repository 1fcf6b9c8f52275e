"""Training-health watchdog: per-metric rules against the run's own running baseline (no verl here).

The ``masksearch`` trainer mode (:mod:`masksearch.recipes.trainer`) hands every step's metrics to a
:class:`Watchdog`; this module decides, the trainer acts. Settings live in one typed group,
``masksearch.health.*`` (:class:`HealthSettings`; unknown keys are an error).

Each rule reads one metric of the step (the first of its ``metrics`` that the step logged) and
compares it with a baseline: the median of the rule's last ``window`` *healthy* values (a value
that is bad for any rule on its metric never enters it, so a slow collapse cannot drag it along;
a tripped ``warn`` rule starts a new baseline). A relative rule is
armed once it holds ``window`` values. A step whose value is bad adds one to the rule's bad-step
count, a good one resets it, a step without the metric does neither; at ``patience`` bad steps
in a row the rule trips and its ``action`` runs:

=================  ======================================  ==========================================
rule               metric (first present)                  bad when
=================  ======================================  ==========================================
entropy_collapse   actor/entropy, else (CPU bypass mode)   value < threshold x baseline (0.5)
                   actor/rollout_corr/training_log_ppl
entropy_explosion  the same                                value > threshold x baseline (2.0)
length_at_budget   response_length/clip_ratio              value > threshold (0.5 of the responses
                                                           end at the length budget)
grad_norm_spike    actor/grad_norm (0 = no signal)         value > threshold x baseline (10)
clip_fraction      actor/pg_clipfrac                       value > threshold (0.3)
nonfinite          loss, grad norm, entropy, KL, log-ppl,  any of them is NaN or infinite
                   score (:data:`NONFINITE_METRICS`)
search_collapse    env/searches_per_sample                 value < threshold x baseline (0.1), once
                                                           the baseline is above 0.05
format_drop        reward/format_ok/mean                   value < threshold x baseline (0.5)
=================  ======================================  ==========================================

Actions: ``off``, ``warn`` (one line naming the metric, its value and its baseline; the rule then
re-learns its baseline, so a lasting shift is reported once), ``stop`` (the run ends with that
line, exit != 0, after saving) and ``rollback`` (the trainer reloads the last checkpoint judged
healthy, multiplies the actor lr by ``lr_factor``, skips the offending batch and goes on; at most
``max_rollbacks`` times, then it stops). A checkpoint saved at step ``S`` is *healthy* when step
``S`` and the step after it are clean (no rule bad): step ``S+1``'s metrics are the first to
describe the weights saved at ``S`` (its rollouts and entropy come from them).

Every step logs ``health/<rule>/bad_steps`` and ``health/<rule>/baseline`` (once armed), plus
``health/events``, ``health/rollbacks`` and ``health/lr_scale``.

>>> dog = Watchdog(HealthSettings.from_mapping({"grad_norm_spike": {"window": 2, "patience": 2}}))
>>> [len(dog.observe(step, {"actor/grad_norm": g}).events) for step, g in enumerate([1.0, 1.2, 50, 60], 1)]
[0, 0, 0, 1]
>>> dog.observe(5, {"actor/grad_norm": 1.1}).metrics["health/grad_norm_spike/bad_steps"]
0.0
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from masksearch.core.jsonl import read_jsonl
from masksearch.core.settings import load_settings

__all__ = [
    "ACTIONS",
    "EVENTS_FILE",
    "NONFINITE_METRICS",
    "RULES",
    "HealthSettings",
    "HealthyCheckpoints",
    "Observation",
    "RuleSettings",
    "RuleSpec",
    "Watchdog",
    "append_events",
    "event_line",
    "read_events",
]

#: What a tripped rule does (``off`` disables the rule).
ACTIONS = ("off", "warn", "stop", "rollback")
#: Severity order: when several rules trip at one step, the most severe action runs.
_SEVERITY = {"off": 0, "warn": 1, "rollback": 2, "stop": 3}
#: The watchdog's events, one JSON object a line, in ``trainer.default_local_dir`` (the viewer and
#: ``make learn`` read it by this name).
EVENTS_FILE = "health_events.jsonl"
#: Metrics the ``nonfinite`` rule checks (those the step logged).
NONFINITE_METRICS = (
    "actor/loss",
    "actor/pg_loss",
    "actor/grad_norm",
    "actor/entropy",
    "actor/ppo_kl",
    "actor/kl_loss",
    "actor/rollout_corr/training_log_ppl",
    "actor/rollout_corr/rollout_log_ppl",
    "critic/score/mean",
    "critic/vf_loss",
    "critic/grad_norm",
)

RuleKind = Literal["drop", "rise", "above", "nonfinite"]


@dataclass(frozen=True)
class RuleSpec:
    """What a rule watches and how it compares (fixed); its numbers are in :class:`RuleSettings`.

    Attributes:
        name: the rule's key under ``masksearch.health``.
        kind: ``drop`` (value < threshold x baseline), ``rise`` (value > threshold x baseline),
            ``above`` (value > threshold) or ``nonfinite`` (any metric NaN/inf).
        metrics: the metric read: the first of these the step logged.
        says: a few words for the event line (``entropy collapsed``).
        min_baseline: a relative rule stays quiet while its baseline is at or below this.
        no_signal_at_or_below: values at or below this say nothing (neither bad nor baseline).
    """

    name: str
    kind: RuleKind
    metrics: tuple[str, ...]
    says: str
    min_baseline: float = 0.0
    no_signal_at_or_below: float | None = None


_ENTROPY = ("actor/entropy", "actor/rollout_corr/training_log_ppl")

#: The rules, in the order they are checked and logged.
RULES: tuple[RuleSpec, ...] = (
    RuleSpec("entropy_collapse", "drop", _ENTROPY, "entropy collapsed"),
    RuleSpec("entropy_explosion", "rise", _ENTROPY, "entropy exploded"),
    RuleSpec(
        "length_at_budget", "above", ("response_length/clip_ratio",), "responses pinned at the length budget"
    ),
    RuleSpec("grad_norm_spike", "rise", ("actor/grad_norm",), "grad norm spiked", no_signal_at_or_below=0.0),
    RuleSpec("clip_fraction", "above", ("actor/pg_clipfrac",), "clip fraction too high"),
    RuleSpec("nonfinite", "nonfinite", NONFINITE_METRICS, "non-finite value"),
    RuleSpec("search_collapse", "drop", ("env/searches_per_sample",), "searching stopped", min_baseline=0.05),
    RuleSpec("format_drop", "drop", ("reward/format_ok/mean",), "format rate dropped"),
)
_SPECS = {spec.name: spec for spec in RULES}


@dataclass(frozen=True)
class RuleSettings:
    """The numbers of one rule (see the module table for what ``threshold`` means per rule).

    Attributes:
        action: ``off`` | ``warn`` | ``stop`` | ``rollback``.
        threshold: a ratio to the baseline (``drop``/``rise`` rules) or an absolute level (``above``).
        window: healthy values in the running baseline (a relative rule is armed once it has them).
        patience: bad steps in a row that trip the rule.
    """

    action: str = "warn"
    threshold: float = 0.5
    window: int = 5
    patience: int = 3

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action={self.action!r}: choose one of {', '.join(ACTIONS)}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise ValueError(f"threshold must be a number, got {self.threshold!r}")
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"threshold must be a finite number >= 0, got {self.threshold!r}")
        for key in ("window", "patience"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an int >= 1, got {value!r}")


@dataclass(frozen=True)
class HealthSettings:
    """``masksearch.health``: the watchdog's switch, rollback budget and one group per rule.

    The defaults only observe: every rule warns, except ``nonfinite``, which stops (verl skips an
    optimizer step whose grad norm is not finite, so such a run would go on without learning).

    Attributes:
        enable: run the watchdog (``health/*`` metrics, events file); False: nothing at all.
        lr_factor: a rollback multiplies the actor's learning rate by this (0 < f <= 1).
        max_rollbacks: rollbacks allowed in a run; the next trip of a ``rollback`` rule stops it.
        probe_size: sequences kept with the healthy checkpoint to check a rollback (their
            log-probs under the restored weights must equal those saved; 0: no check).
        probe_tolerance: largest |log-prob difference| of that check that still passes.
    """

    enable: bool = True
    lr_factor: float = 0.5
    max_rollbacks: int = 2
    probe_size: int = 8
    probe_tolerance: float = 1e-3
    entropy_collapse: RuleSettings = RuleSettings(threshold=0.5)
    entropy_explosion: RuleSettings = RuleSettings(threshold=2.0)
    length_at_budget: RuleSettings = RuleSettings(threshold=0.5)
    grad_norm_spike: RuleSettings = RuleSettings(threshold=10.0, window=10, patience=2)
    clip_fraction: RuleSettings = RuleSettings(threshold=0.3)
    nonfinite: RuleSettings = RuleSettings(action="stop", threshold=0.0, window=1, patience=1)
    search_collapse: RuleSettings = RuleSettings(threshold=0.1)
    format_drop: RuleSettings = RuleSettings(threshold=0.5)

    def __post_init__(self) -> None:
        if not isinstance(self.enable, bool):
            raise ValueError(f"masksearch.health.enable must be true or false, got {self.enable!r}")
        if not isinstance(self.lr_factor, int | float) or not 0 < self.lr_factor <= 1:
            raise ValueError(f"masksearch.health.lr_factor must be in (0, 1], got {self.lr_factor!r}")
        for key in ("max_rollbacks", "probe_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"masksearch.health.{key} must be an int >= 0, got {value!r}")
        if not isinstance(self.probe_tolerance, int | float) or not self.probe_tolerance >= 0:
            raise ValueError(f"masksearch.health.probe_tolerance must be >= 0, got {self.probe_tolerance!r}")

    def rule(self, name: str) -> RuleSettings:
        return getattr(self, name)

    def wants_rollback(self) -> bool:
        """Some enabled rule rolls back (the trainer then keeps a healthy checkpoint)."""
        return self.enable and any(self.rule(spec.name).action == "rollback" for spec in RULES)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> HealthSettings:
        """Build from ``masksearch.health`` as a plain mapping; a rule's group may give only some keys.

        Loaded by :func:`~masksearch.core.settings.load_settings`: unknown keys raise ``ValueError``
        naming the valid ones (a typo must not be ignored).

        >>> HealthSettings.from_mapping({"format_drop": {"action": "stop"}}).format_drop
        RuleSettings(action='stop', threshold=0.5, window=5, patience=3)
        >>> try:
        ...     HealthSettings.from_mapping({"grad_norm": {}})
        ... except ValueError as exc:
        ...     print(str(exc)[:46])
        Unknown masksearch.health key(s) ['grad_norm']
        """
        return load_settings(cls, values, "masksearch.health")


def as_float(value: Any) -> float | None:
    """A float (NaN and inf kept) from a Python/numpy/torch scalar; None for anything else.

    >>> as_float(2), as_float(float("nan")) != as_float(float("nan")), as_float("x"), as_float(True)
    (2.0, True, None, None)
    """
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


@dataclass(frozen=True)
class Event:
    """One tripped rule at one step; ``line`` is the one-line message the trainer prints.

    ``outcome`` is what the trainer did (``warned``, ``stopped``, ``rolled back``, ``stopped:
    <why>``); ``detail`` what it reports about it (the restored step, the new lr, the check).
    """

    step: int
    rule: str
    action: str
    metric: str
    value: float
    baseline: float | None
    threshold: float
    bad_steps: int
    says: str
    outcome: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        return event_line(self.to_json())

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["detail"] = dict(self.detail)
        for key in ("value", "baseline"):
            number = data[key]
            if isinstance(number, float) and not math.isfinite(number):
                data[key] = repr(number)  # JSON has no NaN/inf: "nan", "inf"
        return data


def _fmt(value: Any) -> str:
    number = as_float(value) if not isinstance(value, str) else None
    if number is None:
        return str(value)
    return f"{number:.4g}"


def event_line(event: Mapping[str, Any]) -> str:
    """The one-line message of an event (a dict as written to the events file).

    >>> event_line({"step": 7, "rule": "grad_norm_spike", "action": "warn", "metric": "actor/grad_norm",
    ...             "value": 52.0, "baseline": 1.1, "threshold": 10.0, "bad_steps": 2, "says": "grad norm spiked"})
    'masksearch: health: warn at step 7: grad_norm_spike (grad norm spiked): actor/grad_norm=52 vs baseline 1.1 (threshold 10, 2 bad steps)'
    """
    outcome = event.get("outcome") or event.get("action")
    baseline = event.get("baseline")
    base = f"baseline {_fmt(baseline)}" if baseline is not None else "no baseline yet"
    line = (
        f"masksearch: health: {outcome} at step {event.get('step')}: {event.get('rule')} ({event.get('says')}): "
        f"{event.get('metric')}={_fmt(event.get('value'))} vs {base} "
        f"(threshold {_fmt(event.get('threshold'))}, {event.get('bad_steps')} bad steps)"
    )
    detail = event.get("detail") or {}
    if isinstance(detail, Mapping) and detail.get("summary"):
        line += f"; {detail['summary']}"
    return line


@dataclass
class _RuleState:
    history: deque[float]
    bad_steps: int = 0

    def baseline(self, window: int) -> float | None:
        return statistics.median(self.history) if len(self.history) >= window else None


@dataclass
class Observation:
    """What :meth:`Watchdog.observe` found at one step.

    Attributes:
        events: the rules that tripped (most severe action first), ``outcome`` still empty.
        clean: no rule saw a bad value at this step.
        metrics: the ``health/*`` metrics of the step.
    """

    events: list[Event]
    clean: bool
    metrics: dict[str, float]

    @property
    def action(self) -> str:
        """The most severe action among the events (``off`` when none)."""
        return self.events[0].action if self.events else "off"


class Watchdog:
    """Keeps the rules' baselines and bad-step counts; :meth:`observe` is called once per step."""

    def __init__(self, settings: HealthSettings):
        self.settings = settings
        self.rollbacks = 0
        self.lr_scale = 1.0
        self.events_total = 0
        self._states = {
            spec.name: _RuleState(deque(maxlen=settings.rule(spec.name).window)) for spec in RULES
        }

    def _active(self) -> Iterable[tuple[RuleSpec, RuleSettings, _RuleState]]:
        for spec in RULES:
            rule = self.settings.rule(spec.name)
            if rule.action != "off":
                yield spec, rule, self._states[spec.name]

    def observe(self, step: int, metrics: Mapping[str, Any]) -> Observation:
        """Update every rule with the step's metrics; return the trips, the step's health and ``health/*``.

        A value enters its rule's baseline only when it is not bad for any rule reading the same
        metric (the 59 that trips ``entropy_explosion`` must not raise ``entropy_collapse``'s baseline).
        """
        events: list[Event] = []
        judged: list[tuple[RuleSpec, RuleSettings, _RuleState, str, float, bool | None]] = []
        for spec, rule, state in self._active():
            found = _read(spec, metrics)
            if found is None:
                continue  # the step did not log it: neither counts nor resets
            metric, value = found
            bad = self._judge(spec, rule, state, value)
            if bad is not None:
                state.bad_steps = state.bad_steps + 1 if bad else 0
            judged.append((spec, rule, state, metric, value, bad))
        bad_metrics = {metric for *_, metric, _value, bad in judged if bad}
        for spec, rule, state, metric, value, bad in judged:
            if bad is False and spec.kind != "nonfinite" and metric not in bad_metrics:
                state.history.append(value)
            if bad and state.bad_steps >= rule.patience:
                events.append(
                    Event(
                        step=int(step),
                        rule=spec.name,
                        action=rule.action,
                        metric=metric,
                        value=value,
                        baseline=state.baseline(rule.window),
                        threshold=float(rule.threshold),
                        bad_steps=state.bad_steps,
                        says=spec.says,
                    )
                )
                state.bad_steps = 0
                if rule.action == "warn" and spec.kind in ("drop", "rise"):
                    state.history.clear()  # re-learn: a lasting shift is reported once
        out: dict[str, float] = {}
        for spec, rule, state in self._active():
            out[f"health/{spec.name}/bad_steps"] = float(state.bad_steps)
            baseline = state.baseline(rule.window)
            if baseline is not None:
                out[f"health/{spec.name}/baseline"] = float(baseline)
        events.sort(key=lambda e: -_SEVERITY[e.action])
        self.events_total += len(events)
        out["health/events"] = float(len(events))
        out["health/rollbacks"] = float(self.rollbacks)
        out["health/lr_scale"] = float(self.lr_scale)
        return Observation(events=events, clean=not bad_metrics, metrics=out)

    @staticmethod
    def _judge(spec: RuleSpec, rule: RuleSettings, state: _RuleState, value: float) -> bool | None:
        """Whether one value is bad for one rule; None when it says nothing to this rule."""
        if spec.kind == "nonfinite":
            return not math.isfinite(value)
        if not math.isfinite(value):
            return None  # the nonfinite rule's business
        if spec.no_signal_at_or_below is not None and value <= spec.no_signal_at_or_below:
            return None
        if spec.kind == "above":
            return value > rule.threshold
        baseline = state.baseline(rule.window)
        if baseline is None or baseline <= spec.min_baseline:
            return False  # not armed yet: a good value, it builds the baseline
        if spec.kind == "drop":
            return value < rule.threshold * baseline
        return value > rule.threshold * baseline

    def after_rollback(self, lr_factor: float) -> None:
        """The trainer rolled back: counts restart (baselines stay: the weights are the healthy ones)."""
        self.rollbacks += 1
        self.lr_scale *= lr_factor
        for state in self._states.values():
            state.bad_steps = 0

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        return {
            "rollbacks": self.rollbacks,
            "lr_scale": self.lr_scale,
            "events_total": self.events_total,
            "rules": {
                name: {"history": list(state.history), "bad_steps": state.bad_steps}
                for name, state in self._states.items()
            },
        }

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        self.rollbacks = int(data.get("rollbacks", 0))
        self.lr_scale = float(data.get("lr_scale", 1.0))
        self.events_total = int(data.get("events_total", 0))
        for name, saved in (data.get("rules") or {}).items():
            if name in self._states:
                state = self._states[name]
                state.history.clear()
                state.history.extend(float(v) for v in saved.get("history", []))
                state.bad_steps = int(saved.get("bad_steps", 0))


def _read(spec: RuleSpec, metrics: Mapping[str, Any]) -> tuple[str, float] | None:
    """``(metric, value)`` the rule reads this step, or None when the step logged none of them.

    The ``nonfinite`` rule reads the first non-finite one among those logged (else the first logged).
    """
    found = None
    for name in spec.metrics:
        value = as_float(metrics.get(name)) if name in metrics else None
        if value is None:
            continue
        if spec.kind != "nonfinite":
            return name, value
        if not math.isfinite(value):
            return name, value
        found = found or (name, value)
    return found


class HealthyCheckpoints:
    """Which saved checkpoint is the last healthy one: the decisions, not the files.

    A checkpoint saved at a clean step becomes the *candidate*; the next step decides: clean, it
    becomes the *healthy* one (the previous healthy one is dropped), not clean, it is dropped.
    :meth:`on_step` returns what to do, in order: ``("promote", step)``, ``("discard", step)``,
    ``("stage", step)``.

    >>> keep = HealthyCheckpoints()
    >>> keep.on_step(1, clean=True, saved=True), keep.on_step(2, clean=True, saved=True)
    ([('stage', 1)], [('promote', 1), ('stage', 2)])
    >>> keep.on_step(3, clean=False, saved=True), keep.healthy
    ([('discard', 2)], 1)
    """

    def __init__(self, candidate: int | None = None, healthy: int | None = None):
        self.candidate = candidate
        self.healthy = healthy

    def on_step(self, step: int, *, clean: bool, saved: bool) -> list[tuple[str, int]]:
        actions: list[tuple[str, int]] = []
        if self.candidate is not None and self.candidate < step:
            if clean:
                actions.append(("promote", self.candidate))
                self.healthy, self.candidate = self.candidate, None
            else:
                actions.append(("discard", self.candidate))
                self.candidate = None
        if saved and clean:
            actions.append(("stage", step))
            self.candidate = step
        return actions


# ---------------------------------------------------------------------- the events file
def append_events(run_dir: str | Path, events: Iterable[Mapping[str, Any]]) -> None:
    """Append events (dicts) to ``<run_dir>/health_events.jsonl``, one JSON object a line."""
    path = Path(run_dir) / EVENTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(dict(event), sort_keys=True) + "\n")


def read_events(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The events of a run folder (``trainer.default_local_dir``), oldest first; None without a file.

    Unreadable lines are skipped. A step replayed after a resume keeps its last event per rule.

    >>> import tempfile
    >>> d = tempfile.mkdtemp(); append_events(d, [{"step": 3, "rule": "format_drop"}]); read_events(d)
    [{'rule': 'format_drop', 'step': 3}]
    """
    path = Path(run_dir) / EVENTS_FILE
    if not path.is_file():
        return None
    by_key: dict[tuple[Any, Any], dict[str, Any]] = {}
    for event in read_jsonl(path, errors="replace"):
        by_key.pop((event.get("step"), event.get("rule")), None)
        by_key[(event.get("step"), event.get("rule"))] = event
    return sorted(by_key.values(), key=lambda e: e.get("step") or 0)
