"""MaskSearch SFT stage: multi-agent trajectory synthesis, conversion to verl SFT data, the
self-evolving teacher loop and a small OpenAI-compatible server for CPU.

Modules: ``agents`` (planner / query rewriter / observer prompts and parsers), ``endpoint``
(OpenAI-compatible chat client with retries and an on-disk cache), ``synthesize`` (orchestration,
filtering, resume, report), ``convert`` (kept trajectories -> ``messages`` parquet), ``dataset``
(verl ``data.custom_cls``: env layout, loss on model tokens only), ``serve`` (built-in server),
``evolve`` (synthesize -> train -> serve, N rounds), ``cli`` (``masksearch sft …``).
"""
