"""Fixtures for the viewer tests: inputs in each source's real format, and a headless Chromium.

Inputs are written the way their producers write them: eval records with the fields of
``masksearch eval`` (observations built by the search tool's own ``format_observation``, prompts by
``masksearch.data.prompts``, scores by ``masksearch.rewards.metrics.score_sample`` (what eval uses)), verl dumps with the
keys of verl 0.9.1's ``_write_generations`` (``input``/``output``/``gts``/``score``/``step`` + extras),
SFT records with the keys of ``sft.synthesize.judge_episode``, and a learning report with the schema
of issue 15.

``browser``: Debian's ``chromium`` (``make install-browser``), started headless with a fresh
profile per call; tests skip with the reason when no browser is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]
PLANTED = "<script>window.__pwned=1</script></div><b>bold?</b>"

# (title, passage, spans masked in it)
RAMP_FACTS = [
    ("Zorvath Bridge", "The Zorvath Bridge was designed by Elena Marchetti and opened in 1921.", ["Elena Marchetti", "1921"]),
    ("Quellia", "Quellia is an inland kingdom whose capital is Marrowgate.", ["Marrowgate"]),
    ("Brindle Observatory", "The Brindle Observatory was founded in 1874 by amateur astronomers.", ["1874"]),
]  # fmt: skip
QA_FACTS = [
    ("Who wrote The Glass Orchard?", "Tomas Verhoeven", "The Glass Orchard", "The Glass Orchard is a novel by Tomas Verhoeven."),
    ("Which river flows through Castelmoor?", "Ostra", "Castelmoor", "Castelmoor is built on both banks of the river Ostra."),
]  # fmt: skip


def _observation(title: str, text: str, extra: str = "") -> str:
    from masksearch.search_tool.observation import format_observation
    from masksearch.search_tool.types import Hit

    hits = [
        Hit(id="1", title=title, text=text, score=3.0),
        Hit(id="2", title="Other", text="Nothing here." + extra, score=1.0),
    ]
    return format_observation(hits)


def _episode(query: str, observation: str, answer: str) -> tuple[str, list[dict[str, Any]]]:
    t1 = f"<think>I need to look this up.</think>\n<search>{query}</search>"
    obs = f"\n\n<information>{observation}</information>\n\n"
    t2 = f"<think>The documents say it.</think>\n<answer>{answer}</answer>"
    turns = [
        {"index": 0, "generated_text": t1, "num_generated_tokens": 12, "finish": "stop", "query": query,
         "answer": None, "observation": obs, "num_observation_tokens": 30, "error": None, "latency_s": 0.01,
         "invalid": [], "observation_truncated": False},
        {"index": 1, "generated_text": t2, "num_generated_tokens": 10, "finish": "stop", "query": None,
         "answer": answer, "observation": None, "num_observation_tokens": 0, "error": None, "latency_s": 0.0,
         "invalid": [], "observation_truncated": False},
    ]  # fmt: skip
    return t1 + obs + t2, turns


def eval_records(
    n: int, *, planted: bool = False, wrong_every: int = 3, seed_shift: int = 0
) -> list[dict[str, Any]]:
    """``n`` eval records (RAMP and QA alternating); every ``wrong_every``-th answer is wrong
    although the gold is in the documents; with ``planted`` the first record carries HTML."""
    from masksearch.data.prompts import qa_messages, ramp_messages
    from masksearch.rewards.metrics import score_sample

    out = []
    for i in range(n):
        wrong = wrong_every and (i + seed_shift) % wrong_every == 0
        if i % 2 == 0:
            title, passage, spans = RAMP_FACTS[(i // 2) % len(RAMP_FACTS)]
            masked = passage
            for s in spans:
                masked = masked.replace(s, "[mask]", 1)
            messages = ramp_messages(masked, len(spans), title=title)
            extra = PLANTED if planted and i == 0 else ""
            response, turns = _episode(
                f"{title} {i}",
                _observation(title, passage, extra),
                "\n".join(["nope"] * len(spans)) if wrong else "\n".join(spans),
            )
            data_source, golds, question = "ramp", list(spans), masked
        else:
            q, a, title, text = QA_FACTS[(i // 2) % len(QA_FACTS)]
            messages = qa_messages(q)
            response, turns = _episode(q, _observation(title, text), "unknown" if wrong else a)
            data_source, golds, question = "toyqa", [a], q
        scores = score_sample(
            data_source, response, golds, {"masked_text": question} if data_source == "ramp" else None
        )
        out.append(
            {
                "id": f"toy:{i}:{i:08x}",
                "dataset": data_source,
                "data_source": data_source,
                "question": question,
                "golds": golds,
                "answer": scores["pred"],
                "scores": scores,
                "stats": {"num_searches": 1, "num_turns": 2, "num_invalid_actions": 0, "num_retrieval_errors": 0,
                          "retrieval_latency_s": 0.01, "hit_turn_budget": False, "hit_length_budget": False},
                "stop_reason": "answered",
                "error": None,
                "trajectory": {"messages": messages, "prompt_text": "(rendered)", "response_text": response,
                               "turns": turns, "answer": scores["pred"], "stop_reason": "answered",
                               "stats": {}, "format_ok": True, "format_reason": "ok"},
            }
        )  # fmt: skip
    return out


def write_eval_run(folder: Path, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "trajectories.jsonl").open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    n = len(records)
    em = sum(r["scores"]["em"] for r in records) / max(n, 1)
    (folder / "results.json").write_text(
        json.dumps(
            {
                "metrics": ["em", "f1", "recall"],
                "overall": {"n": n, "em": em, "format_ok": 1.0, "mean_searches": 1.0},
            }
        ),
        encoding="utf-8",
    )
    return folder


def write_verl_dump(
    folder: Path, steps: int = 3, prompts: int = 2, n: int = 2, validation: bool = False
) -> Path:
    """verl's ``<step>.jsonl`` files; the same prompts at every step (to follow across steps)."""
    from masksearch.data.prompts import ramp_messages

    folder.mkdir(parents=True, exist_ok=True)
    for step in range(1, steps + 1):
        lines = []
        for p in range(prompts):
            title, passage, spans = RAMP_FACTS[p % len(RAMP_FACTS)]
            masked = passage
            for s in spans:
                masked = masked.replace(s, "[mask]", 1)
            user = ramp_messages(masked, len(spans), title=title, one_shot=False)
            prompt = f"system\n{user[0]['content']}\nuser\n{user[1]['content']}\nassistant\n"
            for r in range(n):
                right = (step + r) % 2 == 0
                response, _ = _episode(
                    title, _observation(title, passage), "\n".join(spans) if right else "no idea"
                )
                entry: dict[str, Any] = {"input": prompt, "output": response, "gts": list(spans),
                                         "score": 1.0 if right else 0.0, "step": step, "uid": f"u{step}{p}_{r}_0"}  # fmt: skip
                if validation:
                    entry.update({"acc": float(right), "answer_score": float(right), "format_ok": 1.0,
                                  "format_reason": "ok", "num_searches": 1, "pred": ""})  # fmt: skip
                lines.append(json.dumps(entry))
        (folder / f"{step}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def verl_generation_rows(
    inputs: list[str],
    outputs: list[str],
    gts: list[Any],
    scores: list[float],
    reward_extra_infos: dict[str, list[Any]],
    step: int,
) -> list[dict[str, Any]]:
    """Rows as verl 0.9.1's ``RayPPOTrainer._write_generations`` writes them (ray_trainer.py:454-477):
    its own columns ``input``/``output``/``gts``/``score``/``step``, then every column of the
    reward's extra info that has one value per row *over* them, so a reward function that returns a
    dict puts its own ``score`` in place of verl's (the reward with the overlong penalty), then
    ``json.dumps(default=str)``. ``test_verl_still_writes_extras_over_its_columns`` checks the source."""
    n = len(inputs)
    base: dict[str, list[Any]] = {
        "input": inputs,
        "output": outputs,
        "gts": gts,
        "score": scores,
        "step": [step] * n,
    }
    for k, v in reward_extra_infos.items():
        if len(v) == n:
            base[k] = v
    rows = [{k: v[i] for k, v in base.items()} for i in range(n)]
    return [json.loads(json.dumps(r, ensure_ascii=False, default=str)) for r in rows]


def dapo_overlong_reward(
    response_length: int, max_resp_len: int, buffer_len: int, factor: float = 1.0
) -> float:
    """verl 0.9.1's dapo reward manager (experimental/reward_loop/reward_manager/dapo.py:108-113)."""
    expected_len = max_resp_len - buffer_len
    exceed_len = response_length - expected_len
    return min(-exceed_len / buffer_len * factor, 0)


def write_dapo_dump(
    folder: Path,
    lengths: list[int],
    *,
    right: list[bool],
    extras: bool = True,
    log: bool = True,
    validation: bool = False,
    step: int = 1,
    max_resp_len: int = 256,
    buffer_len: int = 128,
) -> list[dict[str, Any]]:
    """One ``<step>.jsonl`` of a DAPO run (``reward.reward_manager.name=dapo``, overlong buffer on):
    one RAMP prompt, a response per entry of ``lengths`` (its token count) and ``right`` (its answer).

    The reward parts are the real ones: ``masksearch.rewards.compute_score`` for the reward
    function, verl's overlong formula on top, ``overlong_reward``/``overlong`` in the extra info
    when ``log``. ``extras=False``: a dump without the reward's extra info (verl's own ``score``
    only); ``validation``: verl's ``_validate`` adds a ``reward`` column first. Returns the expected
    ``[{"fn": reward function score, "overlong": penalty, "reward": what verl trained on}]``."""
    from masksearch.data.prompts import ramp_messages
    from masksearch.rewards import compute_score

    folder.mkdir(parents=True, exist_ok=True)
    title, passage, spans = RAMP_FACTS[0]
    masked = passage
    for s in spans:
        masked = masked.replace(s, "[mask]", 1)
    user = ramp_messages(masked, len(spans), title=title, one_shot=False)
    prompt = f"system\n{user[0]['content']}\nuser\n{user[1]['content']}\nassistant\n"
    outputs, rewards, expected = [], [], []
    infos: dict[str, list[Any]] = {"reward": []} if validation else {}
    for length, ok in zip(lengths, right, strict=True):
        response, _ = _episode(title, _observation(title, passage), "\n".join(spans) if ok else "no idea")
        result = compute_score("ramp", response, list(spans), {"masked_text": masked})
        penalty = dapo_overlong_reward(length, max_resp_len, buffer_len)
        info = dict(result)
        if log:
            info.update({"overlong_reward": penalty, "overlong": penalty < 0})
        reward = result["score"] + penalty
        outputs.append(response)
        rewards.append(reward)
        if validation:
            infos["reward"].append(reward)
        if extras:
            for k, v in info.items():
                infos.setdefault(k, []).append(v)
        expected.append({"fn": result["score"], "overlong": penalty, "reward": reward})
    n = len(lengths)
    rows = verl_generation_rows([prompt] * n, outputs, [list(spans)] * n, rewards, infos, step)
    (folder / f"{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return expected


def write_sft_run(folder: Path) -> Path:
    from masksearch.data.prompts import ramp_messages

    folder.mkdir(parents=True, exist_ok=True)
    title, passage, spans = RAMP_FACTS[1]
    masked = passage.replace(spans[0], "[mask]")
    prompt = ramp_messages(masked, 1, title=title)
    kept_resp, _ = _episode(title, _observation(title, passage), spans[0])
    bad_resp = "<answer>Marrowgate</answer>"
    base = {"data_source": "ramp", "kind": "ramp", "prompt": prompt, "ground_truth": spans,
            "extra_info": {"masked_text": masked}, "teacher": {"name": "rules"}}  # fmt: skip
    kept = {**base, "id": "sft:0", "status": "kept", "reason": "ok", "detail": "", "segments": [], "response": kept_resp,
            "answer": spans[0], "answer_score": 1.0, "num_searches": 1, "num_turns": 2, "stop_reason": "answered", "trace": {}}  # fmt: skip
    rejected = {**base, "id": "sft:1", "status": "rejected", "reason": "missing <think> at start",
                "detail": "stop=answered pred='Marrowgate'", "segments": [], "response": bad_resp, "answer": "Marrowgate",
                "answer_score": 1.0, "num_searches": 0, "num_turns": 1, "stop_reason": "answered", "trace": {}}  # fmt: skip
    (folder / "kept.jsonl").write_text(json.dumps(kept) + "\n", encoding="utf-8")
    (folder / "rejected.jsonl").write_text(json.dumps(rejected) + "\n", encoding="utf-8")
    (folder / "report.json").write_text(
        json.dumps(
            {"items": 2, "kept": 1, "kept_share": 0.5, "rejection_reasons": {"missing <think> at start": 1}}
        ),
        encoding="utf-8",
    )
    return folder


def write_learn_report(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "stages": [
            {"name": "base", "model": "smollm2", "n": 100, "format_ok": 0.0, "em": 0.0, "f1": 0.0, "recall": 0.0, "mean_searches": 0.0},
            {"name": "sft", "model": "sft/hf", "n": 100, "format_ok": 0.97, "em": 0.55, "f1": 0.66, "recall": 0.7, "mean_searches": 1.6},
        ],
        "deltas": [{"from": "base", "to": "sft", "recall_diff": 0.7, "ci95": [0.62, 0.78]}],
        "rl_curve": {"step": [1, 2, 3], "reward/acc/mean": [0.2, 0.3, 0.35], "reward/format_ok/mean": [0.9, 0.95, 1.0],
                     "env/searches_per_sample": [1.5, 1.6, 1.7]},
    }  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- browser
def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Rendered:
    dom: str
    log: str

    def console_errors(self) -> list[str]:
        """Every console message of the page (the viewer logs nothing; an uncaught error shows here too)."""
        return [line for line in self.log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


class Browser:
    def __init__(self, binary: str):
        self.binary = binary

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="ms-chromium-") as profile:
            return subprocess.run(
                [self.binary, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )

    def dump_dom(self, url: str, budget_ms: int = 2000, timeout: float = 60) -> Rendered:
        proc = self._run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url], timeout)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return Rendered(dom=proc.stdout, log=proc.stderr)

    def screenshot(
        self, url: str, path: Path, size: str = "1400,1000", budget_ms: int = 2000, timeout: float = 60
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        proc = self._run(
            [f"--virtual-time-budget={budget_ms}", f"--window-size={size}", f"--screenshot={path}", url],
            timeout,
        )
        assert proc.returncode == 0 and path.is_file(), proc.stderr[-2000:]
        return path


@pytest.fixture(scope="session")
def browser() -> Browser:
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "no chromium on PATH: install it with `make install-browser` (Debian: apt-get install -y chromium)"
        )
    return Browser(binary)


@pytest.fixture(scope="session")
def toy():
    """The input builders above (conftest modules are not importable by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        PLANTED=PLANTED,
        eval_records=eval_records,
        write_eval_run=write_eval_run,
        write_verl_dump=write_verl_dump,
        write_dapo_dump=write_dapo_dump,
        write_sft_run=write_sft_run,
        write_learn_report=write_learn_report,
    )
