"""Teachers of the SFT synthesis; each ``run(item) -> Episode`` drives the env's ``SearchSession``.

``agents`` (LLM planner / query rewriter / observer over an endpoint), ``policy`` (a served search
agent run as in evaluation) and ``rules`` (deterministic planner / rewriter / observer over our
own retriever, no endpoint).
"""
