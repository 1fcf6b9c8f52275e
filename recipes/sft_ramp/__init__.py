"""MaskSearch SFT recipe: verl's engine SFT trainer on synthesised search trajectories.

``python -m masksearch.recipes.sft_ramp <hydra overrides>`` (config: ``config/sft_ramp.yaml``,
deltas over verl's ``sft_trainer_engine``). See ``README.md`` in this folder.
"""

from masksearch.recipes.sft_ramp.checkpoint import latest_checkpoint, sft_checkpoint_to_hf
from masksearch.recipes.sft_ramp.cpu import sft_cpu_overrides

__all__ = ["latest_checkpoint", "sft_checkpoint_to_hf", "sft_cpu_overrides"]
