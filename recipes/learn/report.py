"""The measured report of ``make learn``: ``report.json``, ``report.md`` and ``learning.png``.

``report.json`` has exactly four keys::

    {"stages": [{"name", "model", "n", "format_ok", "em", "f1", "recall", "mean_searches"}, ...],
     "deltas": [{"from", "to", "recall_diff", "ci95": [lo, hi]}, ...],
     "rl_curve": {"step": [...], "reward/acc/mean": [...], "reward/format_ok/mean": [...],
                  "env/searches_per_sample": [...], "reward/acc/mask_1": [...], ...},
     "by_mask_count": {stage name: {"1": {"n", "format_ok", "em", "f1", "recall", "mean_searches"},
                                    ...}, ...}}

``deltas`` are paired: the same validation samples (by id) scored for both stages, the mean
per-sample recall difference, and a 95% percentile bootstrap interval over those samples.

``rl_curve`` has one ``reward/acc/mask_{k}`` list per mask count k the trainer logged (the mean
training ``acc`` of the rollouts whose prompt has k masks), ``null`` at steps without such a prompt.

``by_mask_count`` splits each stage's eval by the val rows' ``extra_info.mask_num``: eval keeps no
mask count in its records, so the report joins them on the sample id with the data file the stage
evaluated (the ids are eval's own, ``load_eval_dataset``'s). A stage on data without mask counts
(FanOutQA) has ``{}``.
"""

from __future__ import annotations

import math
import platform
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from masksearch.core.atomic import atomic_write_json, atomic_write_text
from masksearch.core.jsonl import read_jsonl
from masksearch.curriculum.metrics import ACC_BY_MASK_PREFIX, mask_num_of

__all__ = [
    "MASK_KEYS",
    "STAGE_KEYS",
    "by_mask_count",
    "mask_counts_of",
    "paired_bootstrap",
    "paired_by_mask",
    "plot_learning",
    "quarter_means",
    "read_sample_scores",
    "write_report",
]

STAGE_KEYS = ("name", "model", "n", "format_ok", "em", "f1", "recall", "mean_searches")
CURVE_KEYS = ("step", "reward/acc/mean", "reward/format_ok/mean", "env/searches_per_sample")
#: What ``by_mask_count`` holds per stage and mask count.
MASK_KEYS = ("n", "format_ok", "em", "f1", "recall", "mean_searches")


def read_sample_scores(eval_dir: str | Path, metric: str = "recall") -> dict[str, float]:
    """``sample id -> score`` from an eval run's ``trajectories.jsonl`` (the last line of an id wins)."""
    records = read_jsonl(Path(eval_dir) / "trajectories.jsonl")
    return {str(r["id"]): float((r.get("scores") or {}).get(metric, 0.0)) for r in records if "id" in r}


def mask_counts_of(data: str | Path | None, n: int | None = None) -> dict[str, int]:
    """``sample id -> extra_info.mask_num`` of the first ``n`` samples of an eval data file.

    The ids are the ones eval gives (:func:`masksearch.eval.datasets.load_eval_dataset` of the same
    ``data`` string). A built-in set (``fanoutqa:dev``), a missing or unreadable file, or rows
    without ``mask_num`` give ``{}`` or fewer ids.
    """
    if not data or not Path(str(data)).is_file():
        return {}
    from masksearch.eval.datasets import load_eval_dataset

    try:
        samples = load_eval_dataset(str(data)).samples
    except (OSError, ValueError):
        return {}
    counts = {s.id: mask_num_of(s.extra_info) for s in (samples if n is None else samples[:n])}
    return {sid: k for sid, k in counts.items() if k is not None}


def by_mask_count(eval_dir: str | Path, mask_nums: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """An eval run's results split by mask count: ``{"k": {n, format_ok, em, f1, recall, mean_searches}}``.

    Args:
        eval_dir: the run's folder (its ``trajectories.jsonl``).
        mask_nums: ``sample id -> mask count`` (:func:`mask_counts_of`); only these ids count. When
            empty, a record's own ``mask_num`` (or ``extra_info.mask_num``) is used where it has one.

    Aggregated with eval's own :func:`masksearch.eval.report.summarise` (failed samples score 0).
    """
    from masksearch.eval.report import summarise
    from masksearch.eval.runner import TRAJECTORIES_FILE, read_records

    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for sid, record in read_records(Path(eval_dir) / TRAJECTORIES_FILE).items():
        if mask_nums:
            k = mask_nums.get(sid)
        else:
            k = mask_num_of(record)
            k = mask_num_of(record.get("extra_info")) if k is None else k
        if k is not None:
            groups[k].append({**record, "data_source": record.get("data_source", "")})
    out = {}
    for k in sorted(groups):
        overall = summarise(groups[k], ["em", "f1", "recall"])["overall"]
        out[str(k)] = {key: _round(overall[key]) for key in MASK_KEYS}
    return out


def paired_bootstrap(
    before: Mapping[str, float], after: Mapping[str, float], *, resamples: int = 5000, seed: int = 0
) -> tuple[float, tuple[float, float], int]:
    """``(mean difference, (lo, hi) 95% CI, n)`` of ``after - before`` over their common ids.

    >>> diff, (lo, hi), n = paired_bootstrap({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0})
    >>> diff, lo, hi, n
    (1.0, 1.0, 1.0, 2)
    """
    import numpy as np

    ids = sorted(set(before) & set(after))
    if not ids:
        return float("nan"), (float("nan"), float("nan")), 0
    d = np.array([after[i] - before[i] for i in ids], dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), (float(lo), float(hi)), len(ids)


def paired_by_mask(
    before: Mapping[str, float], after: Mapping[str, float], masks: Mapping[str, int]
) -> dict[str, Any]:
    """:func:`paired_bootstrap` over all common ids and within each mask count of ``masks`` (id -> count).

    Returns ``{"n", "recall_diff", "ci95": [lo, hi], "by_mask": {"<k>": {"n", "recall_diff", "ci95"}}}``:
    the one shape the benchmarks (RL sweep, one-shot) write.

    >>> row = paired_by_mask({"a": 0.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, {"a": 1, "b": 2})
    >>> row["recall_diff"], row["by_mask"]["1"]["recall_diff"], row["by_mask"]["2"]["n"]
    (0.5, 1.0, 1)
    """
    diff, (lo, hi), n = paired_bootstrap(before, after)
    row: dict[str, Any] = {"n": n, "recall_diff": diff, "ci95": [lo, hi], "by_mask": {}}
    for k in sorted(set(masks.values())):
        ids = {i for i, m in masks.items() if m == k}
        d, (klo, khi), kn = paired_bootstrap(
            {i: v for i, v in before.items() if i in ids}, {i: v for i, v in after.items() if i in ids}
        )
        row["by_mask"][str(k)] = {"n": kn, "recall_diff": d, "ci95": [klo, khi]}
    return row


def quarter_means(values: Sequence[float]) -> tuple[float, float]:
    """Mean of the first and of the last quarter of a curve (at least one point each)."""
    clean = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not clean:
        return float("nan"), float("nan")
    q = max(1, len(clean) // 4)
    return sum(clean[:q]) / q, sum(clean[-q:]) / q


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) and not math.isnan(value) else value


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}"


def _mask_curves(curve: Mapping[str, Any]) -> list[tuple[int, str]]:
    """``(k, key)`` of the curve's ``reward/acc/mask_{k}`` lists, by k."""
    found = []
    for key in curve:
        tail = key[len(ACC_BY_MASK_PREFIX) :] if key.startswith(ACC_BY_MASK_PREFIX) else ""
        if tail.isdigit():
            found.append((int(tail), key))
    return sorted(found)


def _masks_label(k: int) -> str:
    return f"{k} mask" if k == 1 else f"{k} masks"


def plot_learning(report: Mapping[str, Any], out: str | Path, title: str) -> Path:
    """Stage bars (format ok, EM, recall in %), the RL curves and the RL acc by mask count, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [st for st in report["stages"] if not st["name"].endswith("fanoutqa")]
    curve = report["rl_curve"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    ax = axes[0]
    metrics = [("format_ok", "format ok"), ("em", "EM"), ("recall", "recall")]
    width = 0.8 / len(metrics)
    for k, (key, label) in enumerate(metrics):
        xs = [i + (k - 1) * width for i in range(len(stages))]
        ys = [100 * float(st[key] or 0.0) for st in stages]
        bars = ax.bar(xs, ys, width, label=label)
        for bar, y in zip(bars, ys, strict=True):
            ax.annotate(
                f"{y:.0f}", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom", fontsize=8
            )
    ax.set_xticks(range(len(stages)))
    ax.set_xticklabels([f"{st['name']}\n(n={st['n']})" for st in stages])
    ax.set_ylim(0, 125)  # room above the 100 % bars for the legend
    ax.set_ylabel("% on held-out RAMP val (greedy)")
    ax.set_title("Stages")
    ax.legend(loc="upper center", fontsize=8, ncol=3)
    ax = axes[1]
    steps = curve.get("step") or []
    if steps:
        for key, label in (("reward/acc/mean", "reward acc"), ("reward/format_ok/mean", "format ok")):
            ax.plot(steps, curve.get(key) or [], marker="o", label=label)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("training batch mean")
        twin = ax.twinx()
        twin.plot(
            steps,
            curve.get("env/searches_per_sample") or [],
            marker="s",
            color="gray",
            linestyle="--",
            label="searches / sample",
        )
        twin.set_ylabel("searches per sample")
        searches = [v for v in curve.get("env/searches_per_sample") or [] if v == v]
        twin.set_ylim(0, max([1.0, *searches]) * 1.15)
        _step_ticks(ax, steps)
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no RL steps logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("RL step")
    ax.set_title("DAPO RL (training batches)")
    _plot_acc_by_mask_count(axes[2], curve, plt)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _step_ticks(ax: Any, steps: Sequence[Any]) -> None:
    """Whole RL steps on the x axis (one tick, not 0.96 ... 1.04, for a one-step run)."""
    if len(set(steps)) == 1:
        ax.set_xticks(list(steps)[:1])
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


def _plot_acc_by_mask_count(ax: Any, curve: Mapping[str, Any], plt: Any) -> None:
    """One line per mask count k: the mean training acc of the rollouts with k masks, per step."""
    steps = curve.get("step") or []
    masks = _mask_curves(curve) if steps else []
    if masks:
        colors = plt.cm.viridis([i / max(1, len(masks) - 1) * 0.85 for i in range(len(masks))])
        for (k, key), color in zip(masks, colors, strict=True):
            ys = [float("nan") if v is None else float(v) for v in curve[key]]
            ax.plot(steps, ys, marker="o", color=color, label=_masks_label(k))
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("training reward acc (mean over rollouts)")
        _step_ticks(ax, steps)
        ax.legend(loc="best", fontsize=8, title="prompt has", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no acc by mask count logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("RL step")
    ax.set_title("RL reward/acc by mask count")


def write_report(
    root: str | Path,
    stage_results: Sequence[Mapping[str, Any]],
    pairs: Sequence[tuple[str, str]],
    rl_curve: Mapping[str, Sequence[float]],
    *,
    extra: Mapping[str, Any] | None = None,
    health_events: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``report.json`` / ``report.md`` / ``learning.png`` into ``root``; return the report.

    Args:
        root: the work dir.
        stage_results: eval summaries (``stage_eval``), in pipeline order; each has ``out``.
        pairs: ``(from, to)`` stage names for the paired deltas.
        rl_curve: the RL curves (``read_rl_curve``).
        extra: what report.md adds around the tables (teacher report, timings, settings).
        health_events: the RL watchdog's events (``recipes.health.read_events``): ``None`` when it
            was off, ``[]`` when no rule tripped (said as such: none is an honest result).

    Each stage's ``data`` (the file it evaluated) and ``n`` give its split by mask count.
    """
    root = Path(root)
    by_name = {st["name"]: st for st in stage_results}
    stages = [{k: _round(st.get(k)) for k in STAGE_KEYS} for st in stage_results]
    deltas = []
    for a, b in pairs:
        if a not in by_name or b not in by_name:
            continue
        diff, (lo, hi), _ = paired_bootstrap(
            read_sample_scores(by_name[a]["out"]), read_sample_scores(by_name[b]["out"])
        )
        deltas.append({"from": a, "to": b, "recall_diff": _round(diff), "ci95": [_round(lo), _round(hi)]})
    curve = {k: [_round(float(v)) for v in rl_curve.get(k, [])] for k in CURVE_KEYS}
    for _, key in _mask_curves(rl_curve):  # a step without such prompts: null, not NaN
        curve[key] = [None if v is None or math.isnan(float(v)) else _round(float(v)) for v in rl_curve[key]]
    masks: dict[tuple[str, int | None], dict[str, int]] = {}
    per_stage = {}
    for st in stage_results:
        spec = (str(st.get("data") or ""), st.get("n"))
        if spec not in masks:
            masks[spec] = mask_counts_of(*spec)
        per_stage[st["name"]] = by_mask_count(st["out"], masks[spec]) if st.get("out") else {}
    report = {
        "stages": stages,
        "deltas": deltas,
        "rl_curve": curve,
        "by_mask_count": per_stage,
        "health_events": None if health_events is None else [dict(e) for e in health_events],
    }
    atomic_write_json(root / "report.json", report, indent=2)
    extra = dict(extra or {})
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = extra.get("machine") or _machine()
    title = f"masksearch make learn — {when} — {machine}"
    plot_learning(report, root / "learning.png", title)
    atomic_write_text(root / "report.md", _markdown(report, extra, title, root))
    return report


def portable_path(value: object, root: str | Path) -> str:
    """A path as report.md (and the README it feeds) shows it: relative to the run folder, else under
    ``~``, else its last three parts; never this machine's absolute path. Non-paths (hub names,
    ``student-round-0``) pass through.

    >>> import pathlib; home = pathlib.Path.home()
    >>> portable_path(home / ".cache/m/SmolLM2", "/elsewhere")
    '~/.cache/m/SmolLM2'
    >>> portable_path("/srv/runs/learn/sft/ckpt", "/srv/runs/learn")
    'sft/ckpt'
    >>> portable_path("/data/x/y/z/model", "/srv"), portable_path("HuggingFaceTB/SmolLM2", "/srv")
    ('…/y/z/model', 'HuggingFaceTB/SmolLM2')
    """
    text = str(value)
    if not text.startswith("/"):
        return text
    path = Path(text).resolve()
    for base, prefix in ((Path(root).resolve(), ""), (Path.home().resolve(), "~/")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            continue
    return "…/" + "/".join(path.parts[-3:])


def _mask_table(per_stage: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Recall % by mask count, one row per stage that has the split (``[]`` when none has)."""
    rows = {name: split for name, split in per_stage.items() if split}
    counts = sorted({int(k) for split in rows.values() for k in split})
    if not counts:
        return []
    ns = {k: {split[str(k)]["n"] for split in rows.values() if str(k) in split} for k in counts}
    same_n = all(len(v) == 1 for v in ns.values())
    head = [f"{_masks_label(k)} (n={next(iter(ns[k]))})" if same_n else _masks_label(k) for k in counts]
    lines = [
        "",
        "Recall % on the val set by mask count (n: val samples with that many masks):",
        "",
        "| stage | " + " | ".join(head) + " |",
        "|---" * (len(counts) + 1) + "|",
    ]
    for name, split in rows.items():
        cells = []
        for k in counts:
            cell = split.get(str(k))
            if cell is None:
                cells.append("–")
            else:
                cells.append(_pct(cell["recall"]) + ("" if same_n else f" (n={cell['n']})"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _machine() -> str:
    import os

    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover - torch is a dependency
        gpu = None
    cpus = os.cpu_count()
    return f"{platform.machine()} {cpus} CPU core(s)" + (f", {gpu}" if gpu else ", no GPU")


def _markdown(report: Mapping[str, Any], extra: Mapping[str, Any], title: str, root: Path) -> str:
    lines = [f"# {title}", ""]
    lines += [
        "| stage | model | n | format ok % | EM % | F1 % | recall % | searches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for st in report["stages"]:
        lines.append(
            f"| {st['name']} | `{portable_path(st['model'], root)}` | {st['n']} | {_pct(st['format_ok'])} | {_pct(st['em'])} | "
            f"{_pct(st['f1'])} | {_pct(st['recall'])} | {st['mean_searches'] if st['mean_searches'] is not None else '–'} |"
        )
    lines += ["", "Paired differences in recall over the same val samples (95% bootstrap CI):", ""]
    lines += ["| from → to | recall diff (points) | 95% CI |", "|---|---|---|"]
    for d in report["deltas"]:
        lo, hi = d["ci95"]
        lines.append(f"| {d['from']} → {d['to']} | {_pct(d['recall_diff'])} | [{_pct(lo)}, {_pct(hi)}] |")
    lines += _mask_table(report.get("by_mask_count") or {})
    curve = report["rl_curve"]
    if curve["step"]:
        first, last = quarter_means(curve["reward/acc/mean"])
        lines += [
            "",
            f"RL: {len(curve['step'])} step(s); mean reward/acc first quarter {first:.3f}, last quarter {last:.3f}; "
            f"searches/sample {curve['env/searches_per_sample'][0]:.2f} → {curve['env/searches_per_sample'][-1]:.2f}.",
        ]
        by_mask = []
        for k, key in _mask_curves(curve):
            logged = [v for v in curve[key] if v is not None and v == v]
            if logged:
                first, last = quarter_means(logged)
                by_mask.append(f"{_masks_label(k)} {first:.3f} → {last:.3f} ({len(logged)} step(s))")
        if by_mask:
            lines += [
                "",
                "RL reward/acc by mask count, first → last quarter of the steps that had such prompts: "
                + "; ".join(by_mask)
                + ".",
            ]
    teacher = extra.get("teacher")
    if teacher:
        lines += [
            "",
            "Rules teacher (SFT data), kept share by mask count:",
            "",
            "| masks | kept | processed | kept % | rejections |",
            "|---|---|---|---|---|",
        ]
        for n, row in (teacher.get("by_mask_count") or {}).items():
            why = ", ".join(f"{k}: {v}" for k, v in row["rejection_reasons"].items()) or "–"
            lines.append(f"| {n} | {row['kept']} | {row['processed']} | {_pct(row['kept_share'])} | {why} |")
    evolve = extra.get("evolve")
    if evolve:
        lines += [
            "",
            "Self-evolve rounds:",
            "",
            "| round | teacher | samples/prompt | teacher acc % | kept % | SFT rows | student val format ok % | student val recall % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in evolve:
            val = r.get("student_val") or {}
            lines.append(
                f"| {r['round']} | {portable_path(r['teacher']['model'], root)} | {r.get('samples_per_item', 1)} | {_pct(r.get('teacher_acc'))} | "
                f"{_pct(r.get('kept_share'))} | {r.get('sft_rows', '–')} | {_pct(val.get('format_ok'))} | "
                f"{_pct(val.get('recall'))} |"
            )
    timings = extra.get("timings")
    if timings:
        total = sum(timings.values())
        lines += [
            "",
            "Wall time per stage (s): "
            + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
            + f"; total {total / 60:.1f} min.",
        ]
    lines += _speed_lines(extra.get("speed") or {})
    if extra.get("final_model"):
        lines += [
            "",
            f"Final model (HF folder, in the work folder): `{portable_path(extra['final_model'], root)}`",
        ]
    if extra.get("budget"):
        lines += ["", f"RL {extra['budget']}"]
    lines += ["", *_health_lines(report.get("health_events"))]
    lines += [
        "",
        "What a CPU run can show: that the pipeline moves the numbers on held-out RAMP val (passages never trained on) — "
        "format, search use and recall — with paired confidence intervals. What it cannot: the paper's multi-hop QA "
        "accuracy. The model is 135M parameters, RL runs a handful of steps, and the embedded corpus does not hold most "
        "FanOutQA answers, so the FanOutQA row shows format and search behaviour only.",
        "",
    ]
    return "\n".join(lines)


def _speed_lines(speed: Mapping[str, Sequence[float] | None]) -> list[str]:
    """SFT vs RL-update training speed, each the median tokens/s of its steps after the first
    (allocator warm-up); nothing when a stage logged no speed (a run from before it was logged)."""
    medians = {k: statistics.median(v[1:] or v) for k, v in speed.items() if v}
    if set(medians) != {"sft", "rl_update"}:
        return []
    sft, rl = medians["sft"], medians["rl_update"]
    return [
        "",
        f"Training speed (median tokens/s per step, first step left out): SFT {sft:.0f}, RL update {rl:.0f}; "
        f"SFT / RL update = {sft / rl:.2f}x.",
    ]


def _health_lines(events: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """report.md's account of the RL watchdog (``masksearch.health``)."""
    from masksearch.recipes.health import event_line

    if events is None:
        return ["Training health (RL watchdog): off."]
    if not events:
        return ["Training health (RL watchdog): no events; no rule tripped during RL."]
    return [f"Training health (RL watchdog): {len(events)} event(s):", ""] + [
        f"- {event_line(e)}" for e in events
    ]
