"""Results of an evaluation run: aggregation, ``results.json``, Markdown tables, comparison plots.

Per data source and overall (``results.json``)::

    n                 samples evaluated (failed ones included, scored 0)
    em, f1, recall    mean answer scores in [0, 1] (``judge`` when the LLM judge ran)
    mean_searches     searches run per sample (the env's count)
    mean_turns        model turns per sample
    format_ok         share of responses that pass the strict tag grammar
    failures          samples with an ``error`` (generation or retrieval failure)
    retrieval_errors  failed searches, summed
    skipped           dataset rows not evaluated (no gold answer / no prompt)

``overall`` averages over samples (micro); ``overall.macro`` averages the per-data-source means,
which is how the MaskSearch paper averages its six datasets. Markdown tables show the answer
metrics in percent.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "COUNT_KEYS",
    "compare_runs",
    "compare_table",
    "load_results",
    "plot_comparison",
    "results_table",
    "summarise",
]

#: Keys of a results group that are not answer metrics.
COUNT_KEYS = (
    "n",
    "mean_searches",
    "mean_turns",
    "format_ok",
    "failures",
    "retrieval_errors",
    "skipped",
)
_LABELS = {"em": "EM", "f1": "F1", "recall": "Recall", "judge": "Judge", "recall_lp": "Recall-LP"}


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _group(records: Sequence[Mapping[str, Any]], metrics: Sequence[str], skipped: int) -> dict[str, Any]:
    scores = [r["scores"] for r in records]
    stats = [r.get("stats") or {} for r in records]
    out: dict[str, Any] = {"n": len(records)}
    for m in metrics:
        out[m] = _mean([float(s.get(m, 0.0)) for s in scores])
    out["mean_searches"] = _mean([float(s.get("num_searches", 0)) for s in stats])
    out["mean_turns"] = _mean([float(s.get("num_turns", 0)) for s in stats])
    out["format_ok"] = _mean([float(s.get("format_ok", 0.0)) for s in scores])
    out["failures"] = sum(1 for r in records if r.get("error"))
    out["retrieval_errors"] = sum(int(s.get("num_retrieval_errors", 0)) for s in stats)
    out["skipped"] = int(skipped)
    return out


def summarise(
    records: Iterable[Mapping[str, Any]],
    metrics: Sequence[str],
    skipped: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Aggregate per-sample records (``trajectories.jsonl`` lines) into results groups.

    Args:
        records: dicts with ``data_source``, ``scores`` (metrics, ``format_ok``), ``stats``
            (``num_searches``, ``num_turns``, ``num_retrieval_errors``) and ``error``.
        metrics: metric keys to average (``em``, ``f1``, ``recall``...).
        skipped: rows skipped per data source.

    Returns:
        ``{"per_data_source": {ds: group}, "overall": group + {"macro": {metric: mean}}}``.

    >>> recs = [{"data_source": "a", "scores": {"em": 1.0, "format_ok": 1.0}, "stats": {"num_turns": 2}},
    ...         {"data_source": "b", "scores": {"em": 0.0, "format_ok": 0.0}, "error": "boom"}]
    >>> out = summarise(recs, ["em"], {"b": 1})
    >>> out["overall"]["em"], out["overall"]["failures"], out["per_data_source"]["b"]["skipped"]
    (0.5, 1, 1)
    """
    skipped = dict(skipped or {})
    by_source: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    all_records = list(records)
    for record in all_records:
        by_source[str(record["data_source"])].append(record)
    per_source = {
        ds: _group(by_source.get(ds, []), metrics, skipped.get(ds, 0))
        for ds in sorted(set(by_source) | set(skipped))
    }
    overall = _group(all_records, metrics, sum(skipped.values()))
    evaluated = [g for g in per_source.values() if g["n"]]
    overall["macro"] = {m: _mean([g[m] for g in evaluated]) for m in metrics}
    return {"per_data_source": per_source, "overall": overall}


def _pct(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def results_table(results: Mapping[str, Any]) -> str:
    """Markdown: one row per data source and an ``overall`` row (metrics in %).

    >>> res = {"metrics": ["em"], **summarise([{"data_source": "a", "scores": {"em": 1.0}}], ["em"])}
    >>> print(results_table(res).splitlines()[2])
    | a | 1 | 100.00 | 0.00 | 0.00 | 0.00 | 0 | 0 |
    """
    metrics = list(results["metrics"])
    head = ["data_source", "n", *[f"{_LABELS.get(m, m)} %" for m in metrics]]
    head += ["searches", "turns", "format ok %", "failures", "skipped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    rows = [*results["per_data_source"].items(), ("**overall**", results["overall"])]
    for name, g in rows:
        cells = [name, str(g["n"]), *[_pct(g.get(m)) for m in metrics]]
        cells += [f"{g['mean_searches']:.2f}", f"{g['mean_turns']:.2f}", _pct(g["format_ok"])]
        cells += [str(g["failures"]), str(g["skipped"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- comparing runs
def load_results(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``results.json`` of a run folder (or the file itself).

    Raises:
        FileNotFoundError / ValueError: missing or unreadable.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json in {run_dir}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or "per_data_source" not in data:
        raise ValueError(f"{path}: not a masksearch eval results.json")
    return data


def _labels(run_dirs: Sequence[str]) -> list[str]:
    names = [Path(d).resolve().name if Path(d).is_dir() else Path(d).resolve().parent.name for d in run_dirs]
    if len(set(names)) == len(names):
        return names
    return [str(Path(d)) for d in run_dirs]


def compare_runs(
    run_dirs: Sequence[str | os.PathLike[str]], metric: str = "recall"
) -> tuple[list[str], list[str], dict[str, dict[str, float | None]]]:
    """Values of ``metric`` per data source for each run.

    Returns:
        ``(run labels, data sources + ["avg"], {label: {data_source: value or None}})`` where
        ``avg`` is the mean over the data sources the run evaluated.

    Raises:
        ValueError: a run does not report ``metric``.
    """
    dirs = [str(d) for d in run_dirs]
    labels = _labels(dirs)
    table: dict[str, dict[str, float | None]] = {}
    sources: list[str] = []
    for label, run_dir in zip(labels, dirs, strict=True):
        results = load_results(run_dir)
        known = list(results.get("metrics") or [])
        if metric not in known:
            raise ValueError(f"{run_dir}: no metric {metric!r} (has {known})")
        row: dict[str, float | None] = {}
        for ds, group in results["per_data_source"].items():
            if group.get("n"):
                row[ds] = float(group[metric])
                if ds not in sources:
                    sources.append(ds)
        row["avg"] = _mean([v for v in row.values() if v is not None]) if row else None
        table[label] = row
    return labels, [*sorted(sources), "avg"], table


def compare_table(
    labels: Sequence[str], sources: Sequence[str], table: Mapping[str, Mapping[str, Any]], metric: str
) -> str:
    """Markdown: one row per data source (and ``avg``), one column per run, values in %."""
    head = [f"{_LABELS.get(metric, metric)} %", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for ds in sources:
        name = "**avg**" if ds == "avg" else ds
        lines.append("| " + " | ".join([name, *[_pct(table[lab].get(ds)) for lab in labels]]) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(
    labels: Sequence[str],
    sources: Sequence[str],
    table: Mapping[str, Mapping[str, Any]],
    metric: str,
    out: str | os.PathLike[str],
) -> Path:
    """Grouped bar chart (one group per data source, one bar per run) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_runs = max(1, len(labels))
    width = 0.8 / n_runs
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(sources) * max(1.0, n_runs / 2) + 2), 4.5), dpi=120)
    cmap = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        xs = [j + (i - (n_runs - 1) / 2) * width for j in range(len(sources))]
        values = [table[label].get(ds) for ds in sources]
        heights = [100 * v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width=width * 0.95, label=label, color=cmap(i % 10))
        for bar, value in zip(bars, values, strict=True):
            text = "n/a" if value is None else f"{100 * value:.1f}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_xticks(range(len(sources)))
    ax.set_xticklabels(
        sources, rotation=20 if len(sources) > 5 else 0, ha="right" if len(sources) > 5 else "center"
    )
    ax.set_ylabel(f"{_LABELS.get(metric, metric)} (%)")
    top = max([100 * v for row in table.values() for v in row.values() if v is not None] or [1.0])
    ax.set_ylim(0, min(105.0, top * 1.18 + 2))
    ax.set_title(f"{_LABELS.get(metric, metric)} per dataset")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
