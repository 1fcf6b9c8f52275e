"""The watchdog inside the ``masksearch`` trainer mode: reads ``masksearch.health``, acts on trips.

:class:`HealthGuard` is what :class:`masksearch.recipes.trainer.MaskSearchTrainer` calls, twice:
``after_step`` at the end of ``_compute_metrics`` (every step, after verl's checkpoint save and
weight sync of that step) and ``after_load`` at the end of ``_load_checkpoint`` (resume). The
rules themselves are in :mod:`masksearch.recipes.health` (no verl); the kept checkpoints in
:mod:`masksearch.recipes.health_checkpoints`.

What each action does here:

* ``warn``: logs the event's line (``masksearch: health: warn at step ...``) and goes on;
* ``stop``: saves the step's checkpoint (verl's ``_save_checkpoint``) unless verl just did, logs
  the step's metrics, prints the line and raises :class:`HealthStop`: the run exits non-zero;
* ``rollback``: puts the rollout to sleep, loads the kept healthy checkpoint with its lr scaled
  through verl's own ``load_checkpoint`` (actor, and critic when there is one), syncs the weights
  to the rollout, and goes on with the next batch (the offending batch's update is undone and its
  data not replayed). The log-probs of up to ``probe_size`` sequences kept with the healthy
  checkpoint are recomputed to check the restore (``detail.probe``). The state of the run after a
  rollback (which folder the live weights came from) is saved with the step, so a resume from that
  step reloads the same weights. No healthy checkpoint yet, or ``max_rollbacks`` used: it stops.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from masksearch.core.logs import module_logger
from masksearch.recipes.health import (
    EVENTS_FILE,
    Event,
    HealthSettings,
    HealthyCheckpoints,
    Watchdog,
    append_events,
)
from masksearch.recipes.health_checkpoints import CheckpointStore
from masksearch.recipes.settings import settings_of

logger = module_logger(__name__, "INFO")

__all__ = ["STATE_FILE", "HealthGuard", "HealthStop"]

#: The watchdog's state saved with each checkpoint (``global_step_N/health_state.json``).
STATE_FILE = "health_state.json"


class HealthStop(RuntimeError):
    """A ``stop`` action (or a rollback that could not be done); the message is the event's line."""


def run_dir_of(config) -> Path:
    """``trainer.default_local_dir`` as verl resolves it (relative to the working directory)."""
    folder = Path(str(OmegaConf.select(config, "trainer.default_local_dir", default="checkpoints")))
    return folder if folder.is_absolute() else Path.cwd() / folder


class _Probe:
    """Sequences of the step after a healthy checkpoint, with their log-probs under its weights."""

    def __init__(self, step: int, fields, tags: list[dict]):
        self.step = step  # the healthy checkpoint's step
        self.fields = fields
        self.tags = tags


class HealthGuard:
    """One per trainer; see the module docstring."""

    def __init__(self, trainer, settings: HealthSettings):
        self.trainer = trainer
        self.settings = settings
        self.run_dir = run_dir_of(trainer.config)
        self.watchdog = Watchdog(settings)
        self.store = CheckpointStore(self.run_dir) if settings.wants_rollback() else None
        self.keeper = HealthyCheckpoints()
        self.probe: _Probe | None = None
        self.live_from: str | None = None  # the folder the live weights were loaded from (rollback)
        if self.store is not None:
            self.keeper = HealthyCheckpoints(self.store.step("candidate"), self.store.step("healthy"))
            if OmegaConf.select(
                trainer.config, "actor_rollout_ref.actor.checkpoint.async_save", default=False
            ):
                raise ValueError(
                    "masksearch.health: a rollback rule needs synchronous checkpoints; "
                    "set actor_rollout_ref.actor.checkpoint.async_save=false or no rule to rollback"
                )
            if int(OmegaConf.select(trainer.config, "trainer.save_freq", default=-1) or -1) <= 0:
                raise ValueError(
                    "masksearch.health: a rollback rule needs checkpoints to roll back to; "
                    "set trainer.save_freq > 0 (or no rule to rollback)"
                )

    @classmethod
    def of(cls, trainer) -> HealthGuard | None:
        """The trainer's guard, built on first use; None when ``masksearch.health.enable`` is false."""
        guard = trainer.__dict__.get("_health_guard", False)
        if guard is False:
            settings = settings_of(trainer).health  # masksearch.* loaded once per trainer
            guard = cls(trainer, settings) if settings.enable else None
            trainer._health_guard = guard
        return guard

    # ------------------------------------------------------------------ resume
    def after_load(self) -> None:
        """After verl's ``_load_checkpoint``: the watchdog's state of that step, and its live weights.

        Also creates the events file (empty when nothing trips: "no events" is told apart from "no
        watchdog"); a run that starts from scratch starts a new one, and forgets kept checkpoints.
        """
        step = int(self.trainer.global_steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / EVENTS_FILE).open("a" if step > 0 else "w", encoding="utf-8"):
            pass
        if self.store is not None:
            self.store.drop_after(step)
            self.keeper = HealthyCheckpoints(self.store.step("candidate"), self.store.step("healthy"))
        if step <= 0:
            return
        path = self.run_dir / f"global_step_{step}" / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        self.watchdog.load_state_dict(state.get("watchdog") or {})
        live_from = state.get("live_from")
        if live_from and Path(live_from, "actor").is_dir():
            # the step ended with a rollback: its saved weights are the bad ones, the live ones were these
            logger.warning("health: step %d ended with a rollback; reloading %s", step, live_from)
            self._load_weights(Path(live_from))
            self.live_from = live_from

    # ------------------------------------------------------------------ every step
    def after_step(self, batch, metrics: dict[str, Any], step: int) -> None:
        """The step's ``health/*`` metrics into ``metrics``; then the action of a tripped rule."""
        step = int(step)
        observed = self.watchdog.observe(step, metrics)
        metrics.update(observed.metrics)
        saved = self._saved_this_step(step)
        if saved:
            self.live_from = None  # verl saved the live weights of this step
        if self.store is not None:
            self._keep(step, observed.clean, saved, batch)
        events = [self._warn(e) if e.action == "warn" else e for e in observed.events]
        worst = observed.action
        if worst == "rollback":
            events[0] = self._rollback(events[0], metrics)
            worst = "stop" if events[0].outcome.startswith("stop") else "rollback"
        elif worst == "stop":
            events[0] = replace(events[0], outcome="stop")
        for i, event in enumerate(events):
            if not event.outcome:  # a less severe trip at the same step than the one acted on
                events[i] = replace(event, outcome=f"{event.action} (superseded)")
        if events:
            append_events(self.run_dir, [e.to_json() for e in events])
        metrics["health/rollbacks"] = float(self.watchdog.rollbacks)
        metrics["health/lr_scale"] = float(self.watchdog.lr_scale)
        if saved:
            self._write_state(step)
        if worst == "stop":
            self._stop(events[0], metrics, saved, step)

    def _saved_this_step(self, step: int) -> bool:
        """Whether verl saved a checkpoint at this step (its own condition in ``fit``)."""
        config = self.trainer.config
        save_freq = int(OmegaConf.select(config, "trainer.save_freq", default=-1) or -1)
        total = getattr(self.trainer, "total_training_steps", None)
        is_last = total is not None and step >= int(total)
        due = save_freq > 0 and (is_last or step % save_freq == 0)
        return due and (self.run_dir / f"global_step_{step}" / "actor").is_dir()

    def _keep(self, step: int, clean: bool, saved: bool, batch) -> None:
        assert self.store is not None
        for action, kept in self.keeper.on_step(step, clean=clean, saved=saved):
            if action == "promote":
                self.store.promote()
                self.probe = self._capture_probe(kept, batch)
            elif action == "discard":
                self.store.clear("candidate")
            else:
                self.store.stage(kept, self.watchdog.lr_scale)

    def _warn(self, event: Event) -> Event:
        event = replace(event, outcome="warn")
        logger.warning(event.line)
        return event

    # ------------------------------------------------------------------ stop
    def _stop(self, event: Event, metrics: dict[str, Any], saved: bool, step: int) -> None:
        trainer = self.trainer
        if not saved and hasattr(trainer, "actor_rollout_wg"):
            trainer._save_checkpoint()  # verl's own save, so the run can be inspected or resumed
            self._write_state(step)
        self._log_step(metrics, step)
        line = event.line
        logger.error(line)
        print(line, file=sys.stderr, flush=True)
        raise HealthStop(line)

    def _log_step(self, metrics: dict[str, Any], step: int) -> None:
        """Log the step's metrics now: raising skips verl's own logging of the step."""
        from verl.trainer.ppo.v1.replay_buffer import DAPO_FILTERED_REWARD_COUNTS_KEY

        tracking = getattr(self.trainer, "logger", None)
        if tracking is None:
            return
        tracking.log(
            data={k: v for k, v in metrics.items() if k != DAPO_FILTERED_REWARD_COUNTS_KEY}, step=step
        )
        for backend in getattr(tracking, "logger", {}).values():
            writer = getattr(backend, "writer", None)
            if writer is not None and hasattr(writer, "flush"):
                writer.flush()

    # ------------------------------------------------------------------ rollback
    def _rollback(self, event: Event, metrics: dict[str, Any]) -> Event:
        settings = self.settings
        assert self.store is not None
        healthy = self.store.step("healthy")
        if self.watchdog.rollbacks >= settings.max_rollbacks:
            why = f"rollback limit reached ({self.watchdog.rollbacks} of {settings.max_rollbacks} done)"
            return replace(event, outcome="stop", detail={"summary": why})
        if healthy is None:
            why = "no checkpoint judged healthy yet to roll back to"
            return replace(event, outcome="stop", detail={"summary": why})
        target_scale = self.watchdog.lr_scale * settings.lr_factor
        folder, new_lr = self.store.prepare_rollback(target_scale)
        before = self._probe_diff()
        self._load_weights(folder)
        after = self._probe_diff()
        self.watchdog.after_rollback(settings.lr_factor)
        self.live_from = str(folder)
        probe: dict[str, Any] = {}
        if after is not None:
            n, diff_after = after
            probe = {
                "sequences": n,
                "max_abs_logprob_diff": diff_after,
                "max_abs_logprob_diff_before": before[1] if before else None,
                "ok": diff_after <= settings.probe_tolerance,
            }
            metrics["health/rollback_probe_diff"] = diff_after
        summary = (
            f"reloaded the healthy checkpoint of step {healthy}, actor lr x{settings.lr_factor:g}"
            + (f" (now {new_lr:.3g})" if new_lr is not None else "")
            + f", batch of step {event.step} skipped; rollback {self.watchdog.rollbacks} of {settings.max_rollbacks}"
        )
        if probe:
            summary += (
                f"; restore check: max |d log-prob| {probe['max_abs_logprob_diff']:.3g} on {probe['sequences']} "
                f"sequences ({'ok' if probe['ok'] else 'MISMATCH'}; before: {_num(probe['max_abs_logprob_diff_before'])})"
            )
        detail = {
            "summary": summary,
            "restored_step": healthy,
            "lr": new_lr,
            "lr_scale": self.watchdog.lr_scale,
            "rollbacks": self.watchdog.rollbacks,
            "probe": probe,
        }
        event = replace(event, outcome="rollback", detail=detail)
        logger.warning(event.line)
        return event

    def _load_weights(self, folder: Path) -> None:
        """verl's own checkpoint loading of ``folder`` (actor, critic), then the weights to the rollout."""
        from verl.trainer.ppo.utils import Role

        trainer = self.trainer
        trainer.checkpoint_manager.sleep_replicas()
        trainer.actor_rollout_wg.load_checkpoint(local_path=str(folder / "actor"), del_local_after_load=False)
        critic = folder / str(Role.Critic)
        if getattr(trainer, "use_critic", False) and critic.is_dir():
            trainer.critic_wg.load_checkpoint(local_path=str(critic), del_local_after_load=False)
        trainer.checkpoint_manager.update_weights(trainer.global_steps)

    # ------------------------------------------------------------------ the restore check
    def _capture_probe(self, healthy_step: int, batch) -> _Probe | None:
        """Up to ``probe_size`` sequences of this step (the one after the healthy checkpoint): their
        ``old_log_probs`` were computed with the healthy checkpoint's weights."""
        size = self.settings.probe_size
        if size <= 0:
            return None
        try:
            import transfer_queue as tq

            pairs = [
                (k, t) for k, t in zip(batch.keys, batch.tags, strict=True) if not t.get("is_padding", False)
            ]
            dp = self._dp_size()
            count = min(size, len(pairs)) // dp * dp
            if count == 0:
                return None
            pairs = pairs[:count]
            fields = tq.kv_batch_get(keys=[k for k, _ in pairs], partition_id=batch.partition_id)
            if "old_log_probs" not in fields.keys() or "response_mask" not in fields.keys():  # noqa: SIM118 (TensorDict)
                return None
            return _Probe(healthy_step, fields, [dict(t) for _, t in pairs])
        except Exception as exc:  # the check is a bonus: never fail a step for it
            logger.warning("health: no restore check for the checkpoint of step %d (%s)", healthy_step, exc)
            return None

    def _dp_size(self) -> int:
        wg = self.trainer.actor_rollout_wg
        if "actor" not in wg._dispatch_info:
            wg._dispatch_info["actor"] = wg._query_dispatch_info("actor")
        return max(wg._dispatch_info["actor"]) + 1

    def _probe_diff(self) -> tuple[int, float] | None:
        """``(sequences, max |log-prob - saved log-prob|)`` of the probe under the live weights."""
        probe = self.probe
        if probe is None:
            return None
        try:
            import transfer_queue as tq
            from transfer_queue import KVBatchMeta
            from verl.workers.utils.padding import response_from_nested, response_to_nested

            trainer = self.trainer
            keys = [f"health-probe-{uuid.uuid4().hex[:8]}-{i}" for i in range(len(probe.tags))]
            drop = [k for k in ("log_probs", "entropy") if k in probe.fields.keys()]  # noqa: SIM118
            tq.kv_batch_put(
                keys=keys, partition_id="train", fields=probe.fields.exclude(*drop), tags=probe.tags
            )
            try:
                meta = KVBatchMeta(
                    partition_id="train",
                    keys=keys,
                    tags=[dict(t) for t in probe.tags],
                    extra_info={
                        "calculate_entropy": False,
                        "compute_loss": False,
                        "temperature": trainer.config.actor_rollout_ref.rollout.temperature,
                    },
                )
                trainer.actor_rollout_wg.compute_log_prob(meta)
                data = tq.kv_batch_get(
                    keys=keys, partition_id="train", select_fields=["log_probs", "response_mask"]
                )
            finally:
                tq.kv_clear(keys=keys, partition_id="train")
            response_mask = data["response_mask"]
            new = response_from_nested(data["log_probs"], response_mask).values().float()
            saved = probe.fields["old_log_probs"]
            if not saved.is_nested:
                saved = response_to_nested(saved, response_mask)
            old = saved.values().float()
            if new.shape != old.shape:
                raise ValueError(f"shapes differ: {tuple(new.shape)} vs {tuple(old.shape)}")
            model_tokens = response_mask.values().bool()  # observations are not the policy's tokens
            diff = (new - old).abs()[model_tokens]
            value = float(diff.max()) if diff.numel() else 0.0
            return len(keys), value if math.isfinite(value) else float("inf")
        except Exception as exc:
            logger.warning("health: restore check failed to run (%s)", exc)
            return None

    # ------------------------------------------------------------------ state
    def _write_state(self, step: int) -> None:
        folder = self.run_dir / f"global_step_{step}"
        if not folder.is_dir():
            return
        state = {"step": step, "watchdog": self.watchdog.state_dict(), "live_from": self.live_from}
        tmp = folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(folder / STATE_FILE)


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"
