"""masksearch.env: the multi-turn search environment (think / search / information / answer).

- ``session``: the turn logic (stop strings, grammar, observations, budgets, termination), shared by
- ``agent_loop``: ``SearchAgentLoop``, the verl agent loop ``masksearch_agent`` (+ ``config/agent_loops.yaml``), and
- ``standalone``: ``run_search_episode(s)`` with the generators of ``generators`` (HF, OpenAI-compatible, vLLM).
- ``config``: ``SearchEnvConfig`` (``+masksearch.env.*``); ``metrics``: ``env_batch_metrics``; ``cli``: ``masksearch chat``.

Importing this package is cheap; ``agent_loop`` imports verl and is loaded by verl's workers.
"""
