"""Literal tokens shared by the RAMP builder, the prompts and the RAMP reward."""

MASK_TOKEN = "[mask]"
"""The placeholder RAMP writes in place of each masked span (MaskSearch's literal ``[mask]``)."""
