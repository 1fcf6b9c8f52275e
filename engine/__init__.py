"""Local generation: one continuous-batching engine over a transformers causal LM (CPU-first)."""
