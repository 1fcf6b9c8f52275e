"""RL sized by measurement (issue 22): RL settings from one SFT checkpoint, scored on held-out val.

Builds ``make learn``'s data and SFT stages once (same code, same knobs: ``LEARN_SCALE`` and the
``make learn`` environment variables apply), evaluates the SFT model greedily on ``--val-samples``
val rows, then runs one RL stage per ``--config`` from that checkpoint and evaluates it on the same
rows. Every RL run has its own folder under ``<work dir>/sweep/<name>`` (the data folder is shared by
a symlink); finished stages are skipped on a rerun, exactly as in ``make learn``.

Prints, and writes to ``<work dir>/sweep.md`` and ``sweep.json``, one row per config (configs of earlier
runs from the same SFT start are kept, so a sweep can be run one config at a time): its settings,
RL wall time, recall after RL, the paired recall difference against the SFT start with its 95%
bootstrap CI, and the difference by mask count.

Usage (alone on the machine: each config is one RL run plus one eval)::

    python benchmarks/rl_sweep.py --config lr1e-5:rl_lr=1e-5,rl_steps=8,rl_batch=4 \\
        --config lr2e-6:rl_lr=2e-6,rl_steps=8,rl_batch=4 [--work-dir outputs/rl_sweep] [--val-samples 200]

A config's keys are :class:`masksearch.recipes.learn.settings.LearnSettings` fields of the RL stage
(``rl_steps rl_batch group_size rl_lr rl_gen_batches format_weight curriculum``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from masksearch.core.atomic import atomic_write_json, atomic_write_text
from masksearch.core.errors import UserFacingError
from masksearch.recipes.learn import stages as st
from masksearch.recipes.learn.main import STAGE_KNOBS, _Stages, in_child, set_child_env_defaults
from masksearch.recipes.learn.report import mask_counts_of, paired_by_mask, read_sample_scores
from masksearch.recipes.learn.settings import parse_knob, settings_from_env

RL_KNOBS = tuple(k for k in STAGE_KNOBS["rl"] if k != "rl_from")


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value,key=value`` -> ``(name, {key: typed value})``."""
    name, _, body = text.partition(":")
    values: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, _, raw = item.partition("=")
        if key not in RL_KNOBS:
            raise SystemExit(f"--config {text}: {key!r} is not an RL knob ({', '.join(RL_KNOBS)})")
        values[key] = parse_knob(key, raw)  # make learn's one-line error for a bad value
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SystemExit(f"--config {text}: give it a name (letters, digits, - _ .) before ':'")
    return name, values


def _paired(start_dir: str, after_dir: str, masks: dict[str, int]) -> dict[str, Any]:
    return paired_by_mask(read_sample_scores(start_dir), read_sample_scores(after_dir), masks)


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


#: What runs saved before a knob existed ran at (not today's default, which may have moved since).
BEFORE_KNOB: dict[str, Any] = {"rl_temperature": 1.0}


def _setting(row: dict[str, Any], key: str) -> Any:
    """A row's value of ``key``; a row saved before the knob existed shows what it ran at."""
    return row["settings"].get(key, BEFORE_KNOB.get(key, "?"))


def write_table(root: Path, start: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The sweep's table so far: ``sweep.md`` and ``sweep.json`` under ``root`` (rewritten after each config)."""
    mask_keys = sorted({k for r in rows for k in r["by_mask"]}, key=int)
    lines = [
        f"SFT start: recall {100 * float(start['recall']):.1f}%, format_ok {100 * float(start['format_ok']):.1f}% "
        f"on {start['n']} held-out val rows (greedy).",
        "",
        "| config | "
        + " | ".join(RL_KNOBS)
        + " | RL min | recall | Δ vs SFT (95% CI) | "
        + " | ".join(f"Δ {k}-mask" for k in mask_keys)
        + " |",
        "|" + "---|" * (len(RL_KNOBS) + 4 + len(mask_keys)),
    ]
    for r in rows:
        by = [
            f"{_pts(r['by_mask'][k]['recall_diff'])} (n={r['by_mask'][k]['n']})" if k in r["by_mask"] else "–"
            for k in mask_keys
        ]
        lines.append(
            f"| {r['name']} | " + " | ".join(str(_setting(r, k)) for k in RL_KNOBS)
            + f" | {r['rl_wall_s'] / 60:.1f} | {100 * float(r['recall']):.1f}% | {_pts(r['recall_diff'])} "
            f"[{_pts(r['ci95'][0])}, {_pts(r['ci95'][1])}] | " + " | ".join(by) + " |"
        )  # fmt: skip
    table = "\n".join(lines)
    atomic_write_text(root / "sweep.md", table + "\n")
    atomic_write_json(root / "sweep.json", {"start": start, "rows": rows}, indent=2, default=str)
    return table


def _earlier_rows(root: Path, start: dict[str, Any], names: set[str]) -> list[dict[str, Any]]:
    """Rows of earlier sweeps from the same SFT start (``sweep.json``) that this one does not rerun:
    the table accumulates configs run one at a time."""
    import json

    path = root / "sweep.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if (saved.get("start") or {}).get("out") != start.get("out"):
        return []
    return [r for r in saved.get("rows") or [] if isinstance(r, dict) and r.get("name") not in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", required=True, help="name:key=value,... (repeatable)")
    ap.add_argument("--work-dir", default="outputs/rl_sweep")
    ap.add_argument("--val-samples", type=int, default=200)
    args = ap.parse_args(argv)
    configs = [parse_config(c) for c in args.config]

    set_child_env_defaults()  # as make learn: the stages' children inherit them
    env = {**os.environ, "WORK_DIR": args.work_dir, "VAL_SAMPLES": str(args.val_samples)}
    base = settings_from_env(env)
    root = base.root
    runs = _Stages(root, base)
    data = runs.run("data", lambda: st.stage_data(base))
    sft = runs.run("sft", lambda: st.stage_sft(base))
    start = runs.run(
        "eval_sft",
        lambda: in_child(st.stage_eval, base, "sft", Path(sft["model"]), data["val"], base.val_samples),
    )
    masks = mask_counts_of(data["val"], base.val_samples)
    print(
        f"[sweep] SFT start: recall {100 * float(start['recall']):.1f}% on {start['n']} val rows", flush=True
    )

    rows = _earlier_rows(root, start, {name for name, _ in configs})
    for name, values in configs:
        s = replace(base, work_dir=str(root / "sweep" / name), rl_from="sft", **values)
        s.root.mkdir(parents=True, exist_ok=True)
        link = s.root / "data"
        if not link.exists():
            link.symlink_to(root / "data", target_is_directory=True)
        sub = _Stages(s.root, s)
        rl = sub.run("rl", lambda s=s: st.stage_rl(s, Path(sft["model"])))
        after = sub.run(
            "eval_rl",
            lambda s=s, rl=rl: in_child(
                st.stage_eval, s, "rl", Path(rl["model"]), data["val"], s.val_samples
            ),
        )
        row = {
            "name": name,
            "settings": {k: getattr(s, k) for k in RL_KNOBS},
            "rl_wall_s": rl["_wall_s"],
            "recall": after["recall"],
            "format_ok": after["format_ok"],
            "searches": after["mean_searches"],
            "rl_curve": rl.get("rl_curve"),
            **_paired(start["out"], after["out"], masks),
        }
        rows.append(row)
        print(
            f"[sweep] {name}: recall {100 * float(row['recall']):.1f}% "
            f"({_pts(row['recall_diff'])} pts, CI [{_pts(row['ci95'][0])}, {_pts(row['ci95'][1])}])",
            flush=True,
        )
        table = write_table(root, start, rows)
    print(table, flush=True)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserFacingError as exc:
        raise SystemExit(f"rl_sweep: error: {exc}") from None
