"""Throughput of the rule rewards: ``compute_score`` responses per second on one core.

Responses are realistic multi-turn trajectories (think / search / ~1.5k-character observations
/ answer, 0-4 rounds, ~2-8k characters), for QA and for RAMP (1-4 masks, list answers and
restored passages), with every rule answer reward. Target: >= 20k responses/s per core.

Usage::

    python benchmarks/rewards.py [--n 2000] [--repeat 5]

Deterministic (a fixed-seed generator builds the inputs; nothing random inside the rewards).
"""

from __future__ import annotations

import argparse
import os
import random
import time

from masksearch.rewards import compute_score

DOC = (
    'Doc {i}(Title: "{title}") {title} is a {kind} located in {place}. It was founded in {year} and is '
    "known for its history, architecture and the many visitors it receives every year. " * 3
)
TITLES = ["Eiffel Tower", "Louvre", "Big Ben", "Colosseum", "Golden Gate Bridge", "Sydney Opera House"]
PLACES = ["Paris", "London", "Rome", "San Francisco", "Sydney", "Berlin"]


def _observation(rng: random.Random) -> str:
    docs = [
        DOC.format(
            i=i,
            title=rng.choice(TITLES),
            kind="landmark",
            place=rng.choice(PLACES),
            year=rng.randint(1800, 2000),
        )
        for i in range(1, 4)
    ]
    return "<information>" + "\n".join(docs)[:1500] + "</information>"


def _trajectory(rng: random.Random, answer: str) -> str:
    parts = ["<think>I need to find where the landmark is and when it was built.</think>"]
    for _ in range(rng.randint(0, 4)):
        parts.append(f"<search>{rng.choice(TITLES)} location year</search>")
        parts.append(_observation(rng))
        parts.append("<think>The documents mention a city; let me check the year too.</think>")
    parts.append(f"<answer>{answer}</answer>")
    return "\n".join(parts)


def build_cases(n: int, seed: int = 0) -> list[tuple[str, str, object, dict]]:
    """``n`` (data_source, response, ground_truth, extra_info) tuples, half QA, half RAMP."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        if i % 2 == 0:
            gold = rng.choice(PLACES)
            answer = gold if rng.random() < 0.5 else rng.choice(PLACES) + " city"
            cases.append(("hotpotqa", _trajectory(rng, answer), [gold, gold.lower()], {}))
        else:
            k = rng.randint(1, 4)
            spans = [rng.choice(PLACES) for _ in range(k)]
            template = " ".join(
                f"Landmark number {j} of the list stands in [mask] near the river." for j in range(k)
            )
            if rng.random() < 0.5:
                answer = "\n".join(f"{j + 1}. {s}" for j, s in enumerate(spans))
            else:
                answer = template
                for s in spans:
                    answer = answer.replace("[mask]", s, 1)
            cases.append(("ramp", _trajectory(rng, answer), spans, {"masked_text": template}))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="responses per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per reward (best is reported)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    cases = build_cases(args.n)
    mean_chars = sum(len(c[1]) for c in cases) / len(cases)
    print(f"{len(cases)} responses, mean {mean_chars:.0f} chars, 50% QA / 50% RAMP, one core")
    print("responses/s = responses / CPU seconds of this process (wall-clock figure in brackets)")
    for reward in ("em", "f1", "recall", "recall_length_penalty"):
        for kind in ("qa", "ramp", "all"):
            subset = [c for c in cases if kind == "all" or (c[0] == "ramp") == (kind == "ramp")]
            best_cpu = best_wall = float("inf")
            for _ in range(args.repeat):
                cpu, wall = time.process_time(), time.perf_counter()
                for source, response, gt, extra in subset:
                    compute_score(source, response, gt, extra, answer_reward=reward)
                best_cpu = min(best_cpu, time.process_time() - cpu)
                best_wall = min(best_wall, time.perf_counter() - wall)
            print(
                f"{reward:>22} {kind:>4}: {len(subset) / best_cpu:8.0f} responses/s"
                f"  ({best_cpu / len(subset) * 1e6:5.1f} us each; wall {len(subset) / best_wall:8.0f}/s)"
            )


if __name__ == "__main__":
    main()
