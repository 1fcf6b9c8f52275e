"""masksearch: MaskSearch (RAMP pre-training, DAPO RL, mask-count curriculum) on top of verl.

Importing this package is cheap on purpose: it is imported in every Ray worker through the
``verl.plugins`` entry point (see ``masksearch.backends.plugin``), so heavy modules load lazily.
"""

__version__ = "0.1.0"
