"""Trajectory synthesis for SFT, one job per module.

``config`` (settings) → ``items`` (loading RAMP / QA rows) → ``search`` (thread-safe search and
tokenizer wrappers) → teachers (``masksearch.sft.teachers``: LLM agents, a served policy, or
deterministic rules) → ``judging`` (grammar + training reward → kept / rejected record) →
``resume`` (the JSONL files on disk) → ``report`` (counts) → ``run`` (orchestration).
``masksearch.sft.synthesize`` re-exports the public names.
"""
