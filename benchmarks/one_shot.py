"""The one-shot example in the prompt once the model is SFT-trained (issue 22, deliverable 3).

Every RAMP prompt carries a worked example in its system message (``data/prompts.py``): base
SmolLM2 writes no tags without it. It costs 158 of 405 prompt tokens (mean over 60 val rows) in every
rollout, every RL forward and backward and every eval episode. Once SFT has taught the format, is it still needed?

This evaluates one SFT model greedily on the same held-out val rows twice, in one run, with the
run's env settings (``make learn``'s eval stage): prompts as built (with the example) and the same
prompts with the example cut from the system message. Prints format_ok, recall, searches, prompt
tokens and wall time of each, and the paired recall difference (95% bootstrap CI), overall and by
mask count.

Usage (alone on the machine; ~8 min per 100 rows on 2 cores)::

    python benchmarks/one_shot.py --work-dir /path/to/make-learn-work-dir [--val-samples 100] [--model DIR]

``--work-dir``: a ``make learn`` (or ``rl_sweep``) work dir whose ``data`` and ``sft`` stages are done;
``--model`` defaults to its SFT model. Results: ``<work dir>/eval/one_shot-*`` and ``one_shot.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from masksearch.data.prompts import RAMP_EXAMPLE
from masksearch.recipes.learn import stages as st
from masksearch.recipes.learn.report import mask_counts_of, paired_by_mask, read_sample_scores
from masksearch.recipes.learn.settings import settings_from_env

EXAMPLE_SUFFIX = "\n\n" + RAMP_EXAMPLE


def without_example(src: Path, dst: Path) -> int:
    """``src`` (RAMP parquet) with the worked example cut from every system message; rows changed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(src).to_pylist()
    changed = 0
    for row in rows:
        for message in row["prompt"]:
            if message["role"] == "system" and message["content"].endswith(EXAMPLE_SUFFIX):
                message["content"] = message["content"][: -len(EXAMPLE_SUFFIX)]
                changed += 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), dst)
    return changed


def _by_row(scores: dict[str, Any]) -> dict[str, Any]:
    """Eval ids are ``<file>:<row>:<fingerprint of the prompt>``: pair the two prompt variants by row."""
    return {sid.rsplit(":", 2)[-2]: v for sid, v in scores.items()}


def _prompt_tokens(data: Path, n: int, tokenizer: Any) -> float:
    import pyarrow.parquet as pq

    rows = pq.read_table(data).slice(0, n).to_pylist()
    texts = [
        tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in rows
    ]
    return statistics.mean(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--val-samples", type=int, default=100)
    parser.add_argument("--model", type=Path, default=None, help="default: the work dir's SFT model")
    args = parser.parse_args(argv)
    s = replace(settings_from_env(), work_dir=str(args.work_dir))
    val = st.paths(s)["val"]
    sft_marker = s.root / "stages" / "sft.json"
    if not val.is_file() or (args.model is None and not sft_marker.is_file()):
        print(f"one_shot: error: {s.root} has no finished data and sft stages (run make learn there first)")
        return 2
    model = args.model or Path(json.loads(sft_marker.read_text(encoding="utf-8"))["model"])
    stripped = s.root / "eval" / "val_no_example.parquet"
    changed = without_example(val, stripped)
    print(f"example cut from {changed} system messages -> {stripped}", flush=True)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    rows: dict[str, dict[str, Any]] = {}
    for name, data in (("with", val), ("without", stripped)):
        start = time.perf_counter()
        result = st.stage_eval(s, f"one_shot-{name}", model, str(data), args.val_samples)
        result["wall_s"] = round(time.perf_counter() - start, 1)
        result["prompt_tokens"] = round(_prompt_tokens(data, args.val_samples, tokenizer), 1)
        rows[name] = result
        print(f"{name} example: format_ok {100 * result['format_ok']:.1f}%, recall {100 * result['recall']:.1f}%, "
              f"searches {result['mean_searches']:.2f}, prompt {result['prompt_tokens']:.0f} tokens, "
              f"{result['wall_s']:.0f} s", flush=True)  # fmt: skip
    before = _by_row(read_sample_scores(rows["with"]["out"]))
    after = _by_row(read_sample_scores(rows["without"]["out"]))
    paired = paired_by_mask(before, after, _by_row(mask_counts_of(str(val), args.val_samples)))
    diff, (lo, hi), n, by_mask = paired["recall_diff"], paired["ci95"], paired["n"], paired["by_mask"]
    summary = {"model": str(model), **paired, **rows}
    print(f"without - with example, recall: {100 * diff:+.1f} points, 95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}] "
          f"on {n} rows; by mask: "
          + ", ".join(f"{k}: {100 * v['recall_diff']:+.1f} (n={v['n']})" for k, v in by_mask.items()))  # fmt: skip
    print(f"prompt tokens {rows['with']['prompt_tokens']:.0f} -> {rows['without']['prompt_tokens']:.0f}; "
          f"eval wall {rows['with']['wall_s']:.0f} s -> {rows['without']['wall_s']:.0f} s")  # fmt: skip
    (s.root / "one_shot.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
