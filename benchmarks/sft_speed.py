"""SFT training speed on CPU: one sequence per micro batch (the CPU profile) vs verl's packed batch.

verl's engine SFT trainer defaults to ``data.use_dynamic_bsz=true`` with 8192 tokens per micro
batch: the whole batch (4 x ~1.1k tokens in ``make learn``) is packed into one row. CPU sdpa has no
varlen kernel, so attention then spans the packed row under a block-diagonal mask, quadratic in its
length. ``masksearch.recipes.sft_ramp.sft_cpu_overrides`` turns it off (one sequence per forward and
backward, as the RL update runs on CPU). This benchmark trains the same rows, same steps, both ways
in one run and prints the median ``perf/throughput`` (tokens/s) of each, their ratio, and, with
``--rl-metrics``, the ratio to the RL update's tokens/s of an RL run on this machine
(``1000 / timing_per_token_ms/update_actor``; issue 22's target: SFT >= 0.9x the RL update).

Usage (alone on the machine; ~10 min on 2 cores with the defaults)::

    python benchmarks/sft_speed.py --data WORK/sft/sft.parquet [--steps 5] [--batch 4] \\
        [--rl-metrics WORK/rl/metrics.jsonl] [--out outputs/sft_speed]

``--data``: an SFT parquet (``make learn`` writes ``<work dir>/sft/sft.parquet``). The first step of
each run is left out of the median (allocator warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from masksearch.engine.models import embedded_model_path
from masksearch.recipes.learn.stages import read_update_speed
from masksearch.recipes.sft_ramp.train import train_sft

#: name -> extra overrides (after the CPU profile's)
SETTINGS = {
    "packed batch (verl default)": ["data.use_dynamic_bsz=true"],
    "one sequence per micro batch (CPU profile)": [],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="an SFT parquet (make learn: sft/sft.parquet)"
    )
    parser.add_argument("--model", default="", help="HF model folder (default: the embedded SmolLM2-135M)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument(
        "--rl-metrics", type=Path, default=None, help="an RL run's metrics.jsonl on this machine"
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/sft_speed"))
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"sft_speed: error: {args.data} is not a file (make learn writes <work dir>/sft/sft.parquet)")
        return 2
    model = args.model or str(embedded_model_path())
    results: dict[str, dict[str, float]] = {}
    for i, (name, overrides) in enumerate(SETTINGS.items()):
        run = train_sft(
            args.data, model, args.out / f"run{i}", batch_size=args.batch, micro_batch_size=1,
            steps=args.steps, max_length=args.max_length, cpu=True,
            overrides=overrides,
        )  # fmt: skip
        if run.returncode != 0 or len(run.tokens_per_s) < 2:
            print(f"sft_speed: error: {name}: rc {run.returncode}, see {run.log_file}")
            return 1
        speed = run.tokens_per_s[1:]
        results[name] = {"tokens_per_s": statistics.median(speed), "final_loss": run.losses[-1]}
        print(f"{name:<44} {results[name]['tokens_per_s']:7.1f} tok/s (median of {len(speed)} steps), "
              f"loss {run.losses[0]:.3f} -> {run.losses[-1]:.3f}", flush=True)  # fmt: skip
    packed, per_seq = (results[n]["tokens_per_s"] for n in SETTINGS)
    summary = {"settings": results, "per_sequence_over_packed": per_seq / packed, "steps": args.steps}
    print(f"one sequence per micro batch / packed: {per_seq / packed:.2f}x tokens/s")
    if args.rl_metrics:
        steps = read_update_speed(args.rl_metrics)
        rl = statistics.median(steps) if steps else None
        if rl is None:
            print(f"sft_speed: {args.rl_metrics} has no timing_per_token_ms/update_actor", file=sys.stderr)
        else:
            summary.update(rl_update_tokens_per_s=rl, sft_over_rl=per_seq / rl, packed_over_rl=packed / rl)
            print(f"RL update (median of {args.rl_metrics}): {rl:.1f} tok/s; SFT / RL update: "
                  f"{per_seq / rl:.2f}x (packed: {packed / rl:.2f}x)")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sft_speed.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
