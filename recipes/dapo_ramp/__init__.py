"""The DAPO + RAMP recipe: ``python -m masksearch.recipes.dapo_ramp <hydra overrides>``."""
