"""``make learn`` / ``python -m masksearch.recipes.learn``: the whole MaskSearch pipeline, one command.

corpus + BM25 index + RAMP (train / val split by passage) → eval base → SFT on rules-teacher
trajectories → eval → one self-evolve round → eval → DAPO RL (``recipes/dapo_ramp``, curriculum
on) → eval (+ FanOutQA dev) → ``report.json``, ``report.md``, ``learning.png``.

Modules: ``settings`` (knobs from environment variables, scales), ``stages`` (one function per
stage, each resumable), ``report`` (paired bootstrap, tables, the picture), ``main`` (order,
markers, printing).
"""
