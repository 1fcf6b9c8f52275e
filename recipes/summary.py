"""Print the last value of the curves people look at first, from a run's tensorboard logs.

``python -m masksearch.recipes.summary TENSORBOARD_DIR`` (``make demo`` ends with it).
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADLINE = (
    "critic/score/mean",
    "reward/acc/mean",
    "reward/format_ok/mean",
    "env/searches_per_sample",
    "curriculum/mask_num_mean",
    "actor/pg_clipfrac",
    "actor/pg_clipfrac_lower",
    "training/filter_groups/evicted_samples",
    "training/dynamic_sampling/exhausted",
    "reward/overlong/mean",
    "timing_s/step",
)


def last_scalars(logdir: str | Path) -> dict[str, tuple[int, float]]:
    """``tag -> (step, value)`` of the latest event of every scalar under ``logdir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    latest: dict[str, tuple[int, float]] = {}
    for event_file in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            event = accumulator.Scalars(tag)[-1]
            if tag not in latest or event.step >= latest[tag][0]:
                latest[tag] = (event.step, event.value)
    return latest


def format_summary(latest: dict[str, tuple[int, float]], logdir: str | Path) -> str:
    if not latest:
        return f"no scalars under {logdir}"
    step = max(s for s, _ in latest.values())
    lines = [f"last values (step {step}):"]
    lines += [f"  {tag:<42} {latest[tag][1]:.4g}" for tag in HEADLINE if tag in latest]
    lines.append(f"tensorboard --logdir {logdir}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m masksearch.recipes.summary TENSORBOARD_DIR", file=sys.stderr)
        return 2
    latest = last_scalars(args[0])
    print(format_summary(latest, args[0]))
    return 0 if latest else 1


if __name__ == "__main__":
    sys.exit(main())
