"""``python -m masksearch.recipes.learn``: run the stages in order, skip the finished ones, report.

A stage is finished when ``<work dir>/stages/<name>.json`` holds its summary; delete that file (or
the stage's folder) to run it again. The budget fit of the RL stage is checked first, so a
configuration that cannot succeed is refused in a second, not after the SFT stages.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from masksearch.core.atomic import atomic_write_json
from masksearch.core.errors import UserFacingError
from masksearch.recipes.learn.settings import LearnSettings, settings_from_env

__all__ = ["STAGES", "in_child", "main", "run_pipeline"]

#: Stage names, in order.
STAGES = (
    "data",
    "eval_base",
    "sft",
    "eval_sft",
    "evolve",
    "eval_evolve",
    "rl",
    "eval_rl",
    "eval_rl_fanoutqa",
)
#: Paired recall differences reported (the last one is the headline: final vs SFT).
PAIRS = (("base", "sft"), ("sft", "evolve"), ("evolve", "rl"), ("sft", "rl"))


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh (spawned) process, for a stage that loads a model in process.

    An eval's generator leaves ~10 GB resident in the process that ran it (allocator arenas are not
    given back), which then sits beside the next stage's RL or SFT run on a 23 GiB machine; a child's
    memory goes back to the OS when it ends. Its exception (a ``UserFacingError``) is raised here.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _say(message: str) -> None:
    print(f"[learn] {message}", flush=True)


def check_rl_budget(s: LearnSettings, echo: Callable[[str], None] = _say) -> None:
    """The RL recipe's budget fit for this run's settings (largest mask count), refused if it fails."""
    from masksearch.recipes.budget import budget_fit, max_fitting_masks

    env = s.env_config()
    fit = budget_fit(
        max_response_length=s.max_response_length,
        max_prompt_length=s.max_prompt_length,
        max_turns=env.max_turns,
        topk=env.topk,
        max_obs_tokens=env.max_obs_tokens,
        masks=s.max_masks,
    )
    echo(fit.line())
    if not fit.fits:
        raise UserFacingError(
            f"budget cannot fit: {'; '.join(fit.problems())}. Fix: MAX_RESPONSE_LENGTH >= {fit.needed()}, "
            f"MAX_TURNS >= {s.max_masks + 1}, or MAX_MASKS={max(1, max_fitting_masks(fit))}"
        )


#: The knobs each stage depends on (a stage also depends on every stage before it).
STAGE_KNOBS = {
    "data": ("ramp_samples", "val_fraction", "max_masks", "corpus_limit"),
    "eval_base": (
        "model_path",
        "max_turns",
        "topk",
        "max_obs_tokens",
        "max_response_length",
        "val_samples",
        "base_val_samples",
    ),
    "sft": ("sft_rows", "sft_steps", "sft_batch", "sft_micro_batch", "sft_lr", "max_prompt_length"),
    "eval_sft": (),
    "evolve": (
        "evolve_rounds",
        "evolve_prompts",
        "evolve_samples",
        "evolve_temperature",
        "evolve_steps",
        "evolve_from",
    ),
    "eval_evolve": (),
    "rl": (
        "rl_steps",
        "rl_batch",
        "group_size",
        "rl_lr",
        "rl_gen_batches",
        "format_weight",
        "rl_temperature",
        "curriculum",
        "rl_from",
    ),
    "eval_rl": (),
    "eval_rl_fanoutqa": ("fanout_samples",),
}


def stage_fingerprint(s: LearnSettings, name: str) -> dict[str, Any]:
    """The knob values a stage's result depends on (its own and every earlier stage's)."""
    values = s.to_dict()
    keys: list[str] = []
    for stage in STAGES:
        keys += STAGE_KNOBS[stage]
        if stage == name:
            break
    return {k: values[k] for k in keys}


#: Keys of a stage marker that name files the later stages read (checked when the stage is skipped).
OUTPUT_KEYS = ("corpus", "index", "train", "val", "model")


class _Stages:
    """Markers under ``stages/``: a finished stage's summary, read back on resume."""

    def __init__(self, root: Path, settings: LearnSettings):
        self.dir = root / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.timings: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        marker = self.dir / f"{name}.json"
        fingerprint = stage_fingerprint(self.settings, name)
        if marker.is_file():
            try:
                saved = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:
                saved = None  # a torn marker: run the stage again
            if saved is not None:
                gone = [
                    k for k in OUTPUT_KEYS if isinstance(saved.get(k), str) and not Path(saved[k]).exists()
                ]
                if gone:
                    raise UserFacingError(
                        f"stage {name} finished before, but its {gone[0]} {saved[gone[0]]} is gone; "
                        f"delete {marker} and the later stages' markers in {self.dir} to rebuild them"
                    )
                # a knob added after that run is read as its default (what the run did without it)
                old = {**LearnSettings().to_dict(), **saved.get("_knobs", fingerprint)}
                changed = sorted(k for k in fingerprint if old[k] != fingerprint[k])
                if changed:
                    knobs = ", ".join(f"{k.upper()} {old[k]!r} -> {fingerprint[k]!r}" for k in changed)
                    raise UserFacingError(
                        f"stage {name} in {self.dir.parent} was run with other settings ({knobs}); "
                        "use another WORK_DIR, or delete that folder to start over"
                    )
                self.timings[name] = float(saved.get("_wall_s", 0.0))
                _say(f"{name}: finished before, skipped ({marker})")
                return saved
        _say(f"{name}: running")
        started = time.perf_counter()
        result = fn()
        wall = round(time.perf_counter() - started, 1)
        result["_wall_s"] = wall
        result["_knobs"] = fingerprint
        atomic_write_json(marker, result, indent=2, default=str)
        self.timings[name] = wall
        _say(f"{name}: done in {wall:.0f}s")
        return result


def _eval_line(r: dict[str, Any]) -> str:
    def pct(x: Any) -> str:
        return "–" if x is None else f"{100 * float(x):.1f}%"

    return (
        f"{r['name']}: n={r['n']} format_ok={pct(r['format_ok'])} em={pct(r['em'])} "
        f"recall={pct(r['recall'])} searches={float(r['mean_searches'] or 0):.2f}"
    )


def run_pipeline(s: LearnSettings) -> dict[str, Any]:
    """Every stage (skipping finished ones), then the report; returns ``report.json``'s content."""
    from masksearch.recipes.learn import stages as st
    from masksearch.recipes.learn.report import write_report

    root = s.root
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "settings.json", s.to_dict(), indent=2)
    check_rl_budget(s)
    runs = _Stages(root, s)
    data = runs.run("data", lambda: st.stage_data(s))
    base = st.base_model(s)
    val = data["val"]
    evals = []

    def evaluate(name: str, model: Path, spec: str = val, n: int = s.val_samples) -> dict[str, Any]:
        result = runs.run(
            f"eval_{name.replace('-', '_')}", lambda: in_child(st.stage_eval, s, name, model, spec, n)
        )
        _say(_eval_line(result))
        return result

    evals.append(evaluate("base", base, n=min(s.val_samples, s.base_val_samples or s.val_samples)))
    sft = runs.run("sft", lambda: st.stage_sft(s))
    evals.append(evaluate("sft", Path(sft["model"])))
    evolve: dict[str, Any] = {}
    if s.evolve_rounds > 0:
        evolve = runs.run("evolve", lambda: in_child(st.stage_evolve, s, Path(sft["model"])))
        evals.append(evaluate("evolve", Path(evolve["model"])))
    else:  # RL starts from SFT (settings refuse RL_FROM=evolve without a round): ~30 min less here
        _say("evolve, eval_evolve: skipped (EVOLVE_ROUNDS=0)")
    start = Path(evolve["model"] if s.rl_from == "evolve" else sft["model"])
    rl = runs.run("rl", lambda: st.stage_rl(s, start))
    evals.append(evaluate("rl", Path(rl["model"])))
    evals.append(evaluate("rl-fanoutqa", Path(rl["model"]), "fanoutqa:dev", s.fanout_samples))
    report = write_report(
        root,
        evals,
        PAIRS,
        rl["rl_curve"],
        extra={
            "teacher": sft.get("teacher"),
            "evolve": evolve.get("rounds"),
            "timings": runs.timings,
            "final_model": rl["model"],
            "budget": rl.get("budget"),
            "speed": {"sft": sft.get("tokens_per_s"), "rl_update": rl.get("update_tokens_per_s")},
        },
        health_events=rl.get("health_events"),
    )
    _say(f"report: {root / 'report.json'}, {root / 'report.md'}, {root / 'learning.png'}")
    _say(f"final model (HF folder): {rl['model']}")
    total = sum(runs.timings.values())
    _say(f"stage time in all: {total / 60:.1f} min (skipped stages count their first run)")
    return report


README_BEGIN = "<!-- learn:begin"
README_END = "<!-- learn:end -->"


def update_readme(root: Path, readme: Path, picture: Path) -> None:
    """Put a finished run's ``report.md`` and ``learning.png`` into the README between the markers.

    Raises:
        UserFacingError: no finished report, or a README without the markers.
    """
    import shutil

    report = root / "report.md"
    if not report.is_file() or not (root / "learning.png").is_file():
        raise UserFacingError(f"no finished run in {root} (report.md / learning.png): run make learn first")
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise UserFacingError(f"{readme}: no '{README_BEGIN} ... {README_END}' block to write into")
    picture.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "learning.png", picture)
    body = report.read_text(encoding="utf-8").strip().splitlines()
    title = body[0].lstrip("# ").strip() if body else ""
    rel = picture.resolve().relative_to(readme.resolve().parent)
    block = "\n".join(
        [
            text[start : text.index("-->", start) + 3],
            f"**{title}**",
            "",
            *body[1:],
            "",
            f"![make learn]({rel.as_posix()})",
            "",
        ]
    )
    readme.write_text(text[:start] + block + text[end:], encoding="utf-8")


def set_child_env_defaults() -> None:
    """What every stage's child process (evals, SFT, RL) inherits unless the user set it: offline
    hub, and glibc's ``MALLOC_ARENA_MAX`` (read when a process starts, so set before the children)."""
    from masksearch.backends.cpu_profile import MALLOC_ARENA_MAX

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MALLOC_ARENA_MAX", str(MALLOC_ARENA_MAX))


def main(argv: list[str] | None = None) -> int:
    """Entry: knobs from the environment (``masksearch.recipes.learn.settings``); no arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        from masksearch.recipes.learn import settings

        print(settings.__doc__)
        return 0
    if args == ["--readme"]:
        try:
            root = settings_from_env().root
            repo = Path(__file__).resolve().parents[2]
            update_readme(root, repo / "README.md", repo / "docs" / "learning.png")
        except UserFacingError as exc:
            print(f"masksearch learn: error: {exc}", file=sys.stderr)
            return 2
        print(f"README.md: the run of {root} written in; picture: docs/learning.png")
        return 0
    if args:
        print(
            "masksearch learn: error: the only option is --readme; set knobs as environment variables (see --help)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=os.getenv("MASKSEARCH_LOGGING_LEVEL", "WARNING"))
    set_child_env_defaults()
    try:
        settings = settings_from_env()
        report = run_pipeline(settings)
    except UserFacingError as exc:
        print(f"masksearch learn: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # a file of WORK_DIR moved or deleted under a finished stage
        print(
            f"masksearch learn: error: {exc.filename or exc} is missing; if files of WORK_DIR were moved or "
            "deleted, delete its stages/ folder (or the markers from the stage that wrote that file on) to rebuild",
            file=sys.stderr,
        )
        return 2
    md = (settings.root / "report.md").read_text(encoding="utf-8")
    print(md)
    return 0 if report["stages"] else 1
