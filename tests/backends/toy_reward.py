"""Rule reward for the foundation e2e test, loaded by verl through ``custom_reward_function.path``.

A random tiny model never answers anything correctly, and GRPO gives exactly zero gradient when
every sample of a group scores the same. So the score is a deterministic hash of the response:
different responses get different scores, which is all the e2e test needs to see a real update.
"""

import zlib


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    score = (zlib.crc32(solution_str.encode("utf-8")) % 1000) / 999.0
    return {"score": score, "acc": float(score >= 0.5)}
