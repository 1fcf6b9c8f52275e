"""Example answer-reward plugin: 1.0 if a gold answer appears, as whole words, in the prediction.

Use it without installing anything, with one Hydra override::

    +reward.custom_reward_function.reward_kwargs.answer_reward=examples/rewards/contains_answer.py:contains_answer

or publish it from your own package under the ``masksearch.rewards`` entry-point group::

    [project.entry-points."masksearch.rewards"]
    contains_answer = "my_pkg.rewards:contains_answer"

Formula: ``max_g [ " " + norm(g) + " " in " " + norm(prediction) + " " ]`` with SQuAD
normalisation (so "the Eiffel Tower, Paris" contains "eiffel tower").

>>> contains_answer("It is the Eiffel Tower, Paris.", ["Eiffel Tower"])
1.0
>>> contains_answer("Towers", ["tower"])
0.0
"""

from __future__ import annotations

from masksearch.rewards.answer import as_gold_list, normalize_answer


def contains_answer(prediction: str, golds: list[str]) -> float:
    """1.0 if any normalised gold alias occurs as whole words in the normalised prediction."""
    pred = f" {normalize_answer(prediction)} "
    for gold in as_gold_list(golds):
        norm = normalize_answer(gold)
        if norm and f" {norm} " in pred:
            return 1.0
    return 0.0
