"""Write the static site: pages, data scripts and assets, all relative, nothing fetched from the network.

Layout of ``DIR``::

    index.html          one row per sample (filters, sorting, paging), per-run and per-step summaries
    sample.html#<key>   one sample; its data is loaded on demand from data/s/<chunk>.js
    compare.html        (--compare A B) two eval runs matched by sample id: the samples whose score changed
    learn.html          (a learning report among the sources) stages, deltas, RL curves
    data/index.js       the index rows (compact; no texts beyond previews)
    data/meta.js        totals and chunk size for sample.html
    data/s/NNNNN.js     the samples, ``CHUNK_SIZE`` per file
    assets/app.js, assets/style.css

Data travels as ``<script>`` files (``window.MS_... = {...}``) because pages opened from disk may
not ``fetch`` their neighbours. JSON is written with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped,
and the pages build every data-derived node with ``textContent``, so any text in a trajectory
(``<script>``, ``</div>``) renders as text. Python-rendered tables go through :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masksearch.core.errors import UserFacingError
from masksearch.core.logs import module_logger
from masksearch.viewer import assets
from masksearch.viewer.sources import LearnReport, LoadResult, Sample, discover, load_sources

logger = module_logger(__name__)

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "BuildResult",
    "build_site",
    "check_compare_inputs",
    "check_out_dir",
    "compare_runs",
]

#: Samples per data file of sample.html (a page loads one file).
CHUNK_SIZE = 100
#: Rows per index page (the page-size selector is capped at ``MAX_PAGE_SIZE``).
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: Other samples of the same prompt listed on a sample page (the index filter shows them all).
MAX_SAME_PROMPT = 60
_SITE_MARKER = ".masksearch-view"


@dataclass
class BuildResult:
    """What :func:`build_site` wrote."""

    out_dir: Path
    n_samples: int
    n_runs: int
    pages: list[str]
    elapsed_s: float
    skipped: dict[str, int] = field(default_factory=dict)
    n_changed: int | None = None
    n_common: int | None = None

    def summary_line(self) -> str:
        changed = ""
        if self.n_changed is not None:
            changed = (
                f", compare: {self.n_changed} of {self.n_common} samples in both runs (matched by sample id) "
                "changed score"
            )
            if not self.n_common:
                changed += " (A and B share no sample id: compare two eval runs of the same data)"
        skipped = f"; skipped: {sum(self.skipped.values())} lines" if self.skipped else ""
        return (
            f"viewer: {self.n_samples} samples from {self.n_runs} run(s){changed} in {self.elapsed_s:.2f}s "
            f"-> {self.out_dir / 'index.html'}{skipped}"
        )


# --------------------------------------------------------------------------- escaping
_JS_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def js_json(value: Any) -> str:
    """JSON safe to place in a script (no ``</script>``, no raw line separators; NaN/inf -> null).

    >>> js_json({"t": "</script><b>&", "x": float("nan")})
    '{"t": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e\\\\u0026", "x": null}'
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_default)
    except ValueError:  # a NaN somewhere (rare): clean the whole value once
        text = json.dumps(_clean(value), ensure_ascii=False, allow_nan=False, default=_default)
    for raw, escaped in _JS_ESCAPES:  # str.replace runs in C; translate() with a dict does not
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _clean(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "–"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


# --------------------------------------------------------------------------- summaries
def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _summary(samples: Sequence[Sample]) -> dict[str, Any]:
    def num(s: Sample, key: str) -> float | None:
        v = s.rewards.get(key)
        return float(v) if isinstance(v, int | float) else None

    return {
        "n": len(samples),
        "score": _mean([num(s, "score") for s in samples]),
        "acc": _mean([num(s, "acc") for s in samples]),
        "format_ok": _mean([num(s, "format_ok") for s in samples]),
        "searches": _mean([float(s.rewards.get("num_searches") or 0) for s in samples]),
        "missed": sum(s.missed for s in samples),
    }


_SUMMARY_COLS = (
    ("n", "samples"),
    ("score", "mean score"),
    ("acc", "acc"),
    ("format_ok", "format ok"),
    ("searches", "searches / sample"),
    ("missed", "gold in docs, not given"),
)


def _summary_table(rows: Sequence[tuple[list[str], dict[str, Any]]], heads: Sequence[str], css: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in heads) + "".join(
        f"<th>{_e(t)}</th>" for _, t in _SUMMARY_COLS
    )
    body = []
    for labels, summ in rows:
        cells = "".join(f"<td>{_e(label)}</td>" for label in labels)
        cells += "".join(f"<td class='num'>{_e(_fmt(summ[k]))}</td>" for k, _ in _SUMMARY_COLS)
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<div class='table-wrap'><table class='{css}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _runs_html(loaded: LoadResult, by_run: Mapping[str, list[Sample]]) -> str:
    rows = [([run, loaded.runs.get(run, {}).get("kind", "")], _summary(ss)) for run, ss in by_run.items()]
    parts = [_summary_table(rows, ("run", "source"), "summary runs")] if rows else []
    for run, info in loaded.runs.items():
        results = info.get("results")
        if isinstance(results, Mapping) and isinstance(results.get("overall"), Mapping):
            overall = results["overall"]
            keys = [
                k
                for k in ("n", "em", "f1", "recall", "judge", "format_ok", "mean_searches", "failures")
                if k in overall
            ]
            cells = "".join(f"<td class='num'>{_e(_fmt(overall[k]))}</td>" for k in keys)
            heads = "".join(f"<th>{_e(k)}</th>" for k in keys)
            parts.append(
                f"<p class='note'>results.json of <b>{_e(run)}</b> (overall):</p>"
                f"<table class='summary results'><thead><tr>{heads}</tr></thead><tbody><tr>{cells}</tr></tbody></table>"
            )
        report = info.get("report")
        if isinstance(report, Mapping):
            keys = [
                k for k, v in report.items() if isinstance(v, int | float | str) and not isinstance(v, bool)
            ][:10]
            cells = "".join(f"<td>{_e(_fmt(report[k]))}</td>" for k in keys)
            heads = "".join(f"<th>{_e(k)}</th>" for k in keys)
            reasons = report.get("rejection_reasons")
            extra = ""
            if isinstance(reasons, Mapping) and reasons:
                extra = (
                    "<p class='note'>rejection reasons: "
                    + ", ".join(f"{_e(k)} = {_e(v)}" for k, v in reasons.items())
                    + "</p>"
                )
            parts.append(
                f"<p class='note'>report.json of <b>{_e(run)}</b>:</p>"
                f"<table class='summary results'><thead><tr>{heads}</tr></thead><tbody><tr>{cells}</tr></tbody></table>{extra}"
            )
        health = info.get("health")
        if isinstance(health, Mapping):
            parts.append(_health_html(run, health.get("events"), str(health.get("path", ""))))
    return "\n".join(parts)


_HEALTH_COLS = ("step", "rule", "outcome", "metric", "value", "baseline", "threshold", "bad_steps")


def _health_html(run: str, events: Any, path: str = "") -> str:
    """The RL watchdog's events of a run as a table; "none" when the watchdog logged none."""
    where = f" <span class='path'>({_e(path)})</span>" if path else ""
    events = [e for e in events or [] if isinstance(e, Mapping)]
    if not events:
        return (
            f"<p class='note health-none'>Training health of <b>{_e(run)}</b>: no watchdog events{where}.</p>"
        )
    head = "".join(f"<th>{_e(c)}</th>" for c in _HEALTH_COLS) + "<th>detail</th>"
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_e(_fmt(e.get(c) if c != 'outcome' else e.get(c) or e.get('action')))}</td>"
            for c in _HEALTH_COLS
        )
        + f"<td>{_e((e.get('detail') or {}).get('summary', '') if isinstance(e.get('detail'), Mapping) else '')}</td></tr>"
        for e in events
    )
    return (
        f"<p class='note warn'>Training health of <b>{_e(run)}</b>: {len(events)} watchdog event(s){where}:</p>"
        f"<div class='table-wrap'><table class='summary health'><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _steps_html(by_run: Mapping[str, list[Sample]]) -> str:
    rows = []
    for run, samples in by_run.items():
        steps: dict[int, list[Sample]] = defaultdict(list)
        for s in samples:
            if s.step is not None:
                steps[s.step].append(s)
        for step in sorted(steps):
            rows.append(([run, str(step)], _summary(steps[step])))
    if not rows:
        return ""
    return "<h2>Per step</h2>" + _summary_table(rows, ("run", "step"), "summary steps")


# --------------------------------------------------------------------------- compare
_KIND_NAMES = {
    "eval": "eval run",
    "verl": "verl dump (<step>.jsonl)",
    "sft": "SFT synthesis folder",
    "learn": "learning report",
}


def check_compare_inputs(compare: Sequence[str | os.PathLike[str]]) -> None:
    """Each of ``compare`` is one ``masksearch eval`` output folder (what compare matches by sample id).

    Raises:
        UserFacingError: a path is missing, or holds something else (a verl dump, several runs...).
    """
    for name, raw in zip("AB", compare, strict=True):
        found = discover([raw])
        if [s.kind for s in found] == ["eval"]:
            continue
        kinds = Counter(_KIND_NAMES[s.kind] for s in found)
        got = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in kinds.items())
        raise UserFacingError(
            "--compare matches the samples of two `masksearch eval` output folders (trajectories.jsonl) "
            f"by sample id; {name} = {raw} holds {got}"
            + ("; give one run folder" if sum(s.kind == "eval" for s in found) > 1 else "")
        )


def compare_runs(a: Sequence[Sample], b: Sequence[Sample]) -> dict[str, Any]:
    """Samples of run ``a`` and ``b`` with the same id whose ``score`` differs.

    Returns:
        ``{"n_a", "n_b", "n_common", "only_a", "only_b", "rows": [{"id", "ka", "kb", "sa", "sb", "d",
        "acc_a", "acc_b", "ans_a", "ans_b", "q"}]}``, rows sorted by ``|d|`` (largest first).
    """
    by_id_b = {s.id: s for s in b}
    ids_a = {s.id for s in a}
    rows = []
    common = 0
    for sa in a:
        sb = by_id_b.get(sa.id)
        if sb is None:
            continue
        common += 1
        x, y = sa.rewards.get("score"), sb.rewards.get("score")
        if (
            not isinstance(x, int | float)
            or not isinstance(y, int | float)
            or abs(float(x) - float(y)) < 1e-9
        ):
            continue
        rows.append(
            {
                "id": sa.id,
                "ka": sa.key,
                "kb": sb.key,
                "sa": float(x),
                "sb": float(y),
                "d": float(y) - float(x),
                "acc_a": sa.rewards.get("acc"),
                "acc_b": sb.rewards.get("acc"),
                "ans_a": (sa.answer or "")[:80],
                "ans_b": (sb.answer or "")[:80],
                "q": sa.index_row()["q"],
            }
        )
    rows.sort(key=lambda r: (-abs(r["d"]), r["id"]))
    return {
        "n_a": len(a),
        "n_b": len(b),
        "n_common": common,
        "only_a": len(ids_a - set(by_id_b)),
        "only_b": len(set(by_id_b) - ids_a),
        "rows": rows,
    }


# --------------------------------------------------------------------------- learn report
def _svg_curve(
    name: str, steps: Sequence[Any], values: Sequence[Any], width: int = 360, height: int = 180
) -> str:
    pts = [
        (float(s), float(v))
        for s, v in zip(steps, values, strict=False)
        if isinstance(s, int | float) and isinstance(v, int | float) and math.isfinite(float(v))
    ]
    title = f"<figcaption>{_e(name)}</figcaption>"
    if not pts:
        return f"<figure class='curve'>{title}<p class='note'>no values</p></figure>"
    pad = 34
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)  # rates and counts read from 0
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1

    def px(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad + (y0 - y) / (y1 - y0) * (height - 2 * pad)

    path = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(pts))
    dots = "".join(f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='2.5'/>" for x, y in pts)
    axes = (
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' class='axis'/>"
        f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' class='axis'/>"
        f"<text x='{pad}' y='{height - 10}' class='tick'>{_e(_fmt(x0, 0))}</text>"
        f"<text x='{width - pad}' y='{height - 10}' class='tick' text-anchor='end'>{_e(_fmt(x1, 0))}</text>"
        f"<text x='{pad - 4}' y='{height - pad}' class='tick' text-anchor='end'>{_e(_fmt(y0, 2))}</text>"
        f"<text x='{pad - 4}' y='{pad + 4}' class='tick' text-anchor='end'>{_e(_fmt(y1, 2))}</text>"
        f"<text x='{width / 2}' y='{height - 2}' class='tick' text-anchor='middle'>step</text>"
    )
    svg = (
        f"<svg viewBox='0 0 {width} {height}' width='{width}' height='{height}' role='img'>"
        f"{axes}<path d='{path}' class='line'/>{dots}</svg>"
    )
    return f"<figure class='curve'>{title}{svg}</figure>"


def _learn_html(reports: Sequence[LearnReport]) -> str:
    parts = []
    for rep in reports:
        data = rep.data
        parts.append(f"<h2>{_e(rep.label)}</h2><p class='note'>{_e(rep.path)}</p>")
        stages = [s for s in data.get("stages") or [] if isinstance(s, Mapping)]
        cols = ("name", "model", "n", "format_ok", "em", "f1", "recall", "mean_searches")
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td class='{'num' if c not in ('name', 'model') else ''}'>{_e(_fmt(s.get(c)))}</td>"
                for c in cols
            )
            + "</tr>"
            for s in stages
        )
        parts.append(
            f"<h3>Stages</h3><table class='summary stages'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
        deltas = [d for d in data.get("deltas") or [] if isinstance(d, Mapping)]
        if deltas:
            body = "".join(
                f"<tr><td>{_e(d.get('from'))}</td><td>{_e(d.get('to'))}</td><td class='num'>{_e(_fmt(d.get('recall_diff')))}</td>"
                f"<td class='num'>{_e(', '.join(_fmt(x) for x in (d.get('ci95') or [])))}</td></tr>"
                for d in deltas
            )
            parts.append(
                "<h3>Deltas (paired bootstrap)</h3><table class='summary deltas'><thead><tr><th>from</th><th>to</th>"
                f"<th>recall diff</th><th>95% CI</th></tr></thead><tbody>{body}</tbody></table>"
            )
        curve = data.get("rl_curve")
        if isinstance(curve, Mapping) and isinstance(curve.get("step"), list):
            figs = "".join(
                _svg_curve(str(k), curve["step"], v)
                for k, v in curve.items()
                if k != "step" and isinstance(v, list)
            )
            parts.append(f"<h3>RL curves</h3><div class='curves'>{figs}</div>")
        if "health_events" in data:  # the RL stage's watchdog (None: it was off)
            if data["health_events"] is None:
                parts.append("<h3>Training health</h3><p class='note'>The watchdog was off.</p>")
            else:
                parts.append("<h3>Training health</h3>" + _health_html("the RL stage", data["health_events"]))
    return "\n".join(parts)


# --------------------------------------------------------------------------- pages
def _page(title: str, body: str, scripts: Sequence[str] = (), page: str = "") -> str:
    tags = "".join(f"<script src='{_e(s)}'></script>" for s in scripts)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><link rel='stylesheet' href='assets/style.css'>"
        f"<script>{assets.ERROR_COLLECTOR}</script></head>"
        f"<body data-page='{_e(page)}'>"
        "<nav class='top'><a href='index.html'>index</a> <span id='nav-extra'></span></nav>"
        f"{body}<pre id='ms-errors' data-count='0' hidden></pre>{tags}</body></html>"
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def check_out_dir(out: Path) -> None:
    """``out`` can be the site folder: a folder, or nothing yet below a folder.

    Raises:
        UserFacingError: ``out`` (or a folder above it) is a file.
    """
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == out else f"is below a file ({path})"
                raise UserFacingError(f"--out {out} {what}, not a folder; give a folder for the site")
            return


def _prepare_out(out: Path, overwrite: bool) -> None:
    check_out_dir(out)
    if out.exists() and any(out.iterdir()):
        if not (out / _SITE_MARKER).is_file() and not overwrite:
            raise UserFacingError(
                f"{out} exists and is not a viewer site; choose another --out (or --overwrite to replace it)"
            )
        for name in ("data", "assets"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("index.html", "sample.html", "compare.html", "learn.html"):
            (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / _SITE_MARKER).write_text("written by masksearch view\n", encoding="utf-8")
    except OSError as exc:
        raise UserFacingError(f"cannot write the site to --out {out}: {exc.strerror or exc}") from exc


def build_site(
    sources: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    compare: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    title: str = "masksearch trajectories",
    overwrite: bool = False,
    loaded: LoadResult | None = None,
) -> BuildResult:
    """Read ``sources`` (and the two runs of ``compare``) and write the site into ``out_dir``.

    Args:
        sources: eval runs, verl dump folders, SFT synthesis folders, learning reports (or folders holding them).
        out_dir: the site folder (created; an earlier viewer site there is replaced).
        compare: two eval runs ``(A, B)`` (``masksearch eval`` output folders); their samples are
            matched by sample id, and ``compare.html`` lists those whose score changed.
        page_size: index rows per page (1..``MAX_PAGE_SIZE``).
        title: the index page's title.
        overwrite: replace a non-empty ``out_dir`` that is not a viewer site.
        loaded: already loaded samples (``sources`` is then ignored); used by tests and benchmarks.

    Raises:
        UserFacingError: nothing to view, a bad page size, ``out_dir`` is a file or holds something
            else, or a ``compare`` path is not one eval run.
    """
    started = time.perf_counter()
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise UserFacingError(f"--page-size must be in 1..{MAX_PAGE_SIZE}, got {page_size}")
    out = Path(out_dir)
    compare_labels: tuple[str, str] | None = None
    check_out_dir(out)
    if loaded is None:
        paths = list(sources)
        labels: list[str | None] | None = None
        if compare is not None:
            check_compare_inputs(compare)
            paths += [compare[0], compare[1]]
            labels = [None] * len(sources) + ["A", "B"]
            compare_labels = ("A", "B")
        if not paths:
            raise UserFacingError("nothing to view: give at least one SRC (or --compare A B)")
        loaded = load_sources(paths, labels=labels)
    if not loaded.samples and not loaded.reports and not any("health" in r for r in loaded.runs.values()):
        raise UserFacingError("the sources hold no samples (empty files?)")
    _prepare_out(out, overwrite)

    samples = loaded.samples
    by_run: dict[str, list[Sample]] = defaultdict(list)
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_run[s.run].append(s)
        groups[s.group].append(s)

    # data: index rows, per-sample chunks
    rows = [s.index_row() for s in samples]
    has_steps = any(s.step is not None for s in samples)
    multi_step_groups = sum(1 for g in groups.values() if len({s.step for s in g}) > 1)
    index_data = {
        "rows": rows,
        "page_size": page_size,
        "max_page_size": MAX_PAGE_SIZE,
        "has_steps": has_steps,
        "multi_step_groups": multi_step_groups,
        "runs": list(by_run),
    }
    _write(out / "data" / "index.js", "window.MS_INDEX = " + js_json(index_data) + ";\n")
    n_chunks = max(1, math.ceil(len(samples) / CHUNK_SIZE))
    meta = {"total": len(samples), "chunk_size": CHUNK_SIZE, "n_chunks": n_chunks}
    _write(out / "data" / "meta.js", "window.MS_META = " + js_json(meta) + ";\n")
    chunk_dir = out / "data" / "s"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    for c in range(n_chunks):
        part = []
        for s in samples[c * CHUNK_SIZE : (c + 1) * CHUNK_SIZE]:
            record = s.to_json()
            group = groups[s.group]
            if len(group) > 1:
                record["same_prompt"] = [
                    [o.key, o.run, o.kind, o.step, o.rewards.get("score")] for o in group[:MAX_SAME_PROMPT]
                ]
                record["same_prompt_total"] = len(group)
            part.append(record)
        (chunk_dir / f"{c:05d}.js").write_text(
            f"window.MS_CHUNK({c}, " + js_json(part) + ");\n", encoding="utf-8"
        )

    # assets
    _write(out / "assets" / "app.js", assets.APP_JS)
    _write(out / "assets" / "style.css", assets.STYLE_CSS)

    pages = ["index.html", "sample.html"]
    n_changed = n_common = None
    if compare_labels is not None:
        cmp = compare_runs(by_run.get(compare_labels[0], []), by_run.get(compare_labels[1], []))
        cmp["a"] = str(compare[0])  # type: ignore[index]
        cmp["b"] = str(compare[1])  # type: ignore[index]
        n_changed, n_common = len(cmp["rows"]), cmp["n_common"]
        _write(out / "data" / "compare.js", "window.MS_COMPARE = " + js_json(cmp) + ";\n")
        none_common = (
            "<p class='note warn' id='cmp-none'>A and B share no sample id: compare two eval runs "
            "of the same data.</p>"
            if not n_common
            else ""
        )
        body = (
            "<h1>Compare</h1>"
            f"<p class='note'>A = {_e(compare[0])}<br>B = {_e(compare[1])}</p>"  # type: ignore[index]
            "<p class='note' id='cmp-how'>Two eval runs, their samples matched by sample id (the "
            "<code>id</code> of trajectories.jsonl); listed: the samples whose score changed, "
            "largest change first.</p>"
            f"{none_common}<p id='cmp-count' class='count'></p>"
            "<div class='table-wrap'><table id='cmp' class='rows'></table></div>"
        )
        _write(
            out / "compare.html",
            _page("masksearch compare", body, ["data/compare.js", "assets/app.js"], "compare"),
        )
        pages.append("compare.html")
    if loaded.reports:
        _write(
            out / "learn.html",
            _page(
                "masksearch learning report",
                "<h1>Learning report</h1>" + _learn_html(loaded.reports),
                [],
                "learn",
            ),
        )
        pages.append("learn.html")

    links = " · ".join(
        f"<a href='{_e(p)}'>{_e(p.split('.')[0])}</a>"
        for p in pages
        if p not in ("index.html", "sample.html")
    )
    skipped_note = ""
    if loaded.skipped:
        skipped_note = (
            "<p class='note warn'>skipped while reading: "
            + ", ".join(f"{_e(k)} ({v})" for k, v in loaded.skipped.items())
            + "</p>"
        )
    index_body = (
        f"<h1>{_e(title)}</h1>"
        + (f"<p class='links'>{links}</p>" if links else "")
        + skipped_note
        + "<h2>Runs</h2>"
        + _runs_html(loaded, by_run)
        + _steps_html(by_run)
        + "<h2>Samples</h2>"
        "<form id='filters' class='filters' onsubmit='return false'></form>"
        "<p class='count'><span id='count'></span> <span id='fsummary'></span></p>"
        "<div class='pager' id='pager-top'></div>"
        "<div class='table-wrap'><table id='rows' class='rows'></table></div>"
        "<div class='pager' id='pager-bottom'></div>"
    )
    _write(out / "index.html", _page(title, index_body, ["data/index.js", "assets/app.js"], "index"))
    sample_body = "<div id='sample'><p class='note'>loading…</p></div>"
    _write(
        out / "sample.html",
        _page("masksearch sample", sample_body, ["data/meta.js", "assets/app.js"], "sample"),
    )

    elapsed = time.perf_counter() - started
    return BuildResult(
        out_dir=out,
        n_samples=len(samples),
        n_runs=len(by_run),
        pages=pages,
        elapsed_s=elapsed,
        skipped=dict(loaded.skipped),
        n_changed=n_changed,
        n_common=n_common,
    )
