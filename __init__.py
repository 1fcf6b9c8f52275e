"""masksearch: MaskSearch (RAMP pre-training, DAPO RL, mask-count curriculum) on top of verl.

Importing this package is cheap on purpose: it is imported in every Ray worker through the
``verl.plugins`` entry point (see ``masksearch.backends.plugin``), so heavy modules load lazily.
"""

__version__ = "0.1.0"


def cache_root():
    """``$MASKSEARCH_CACHE`` or ``~/.cache/masksearch``: converted models, corpora, indexes, merged checkpoints."""
    import os
    from pathlib import Path

    env = os.environ.get("MASKSEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "masksearch"
