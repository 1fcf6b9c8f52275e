"""``python -m masksearch.recipes.sft_ramp <hydra overrides>``."""

import sys

from masksearch.recipes.sft_ramp.main import main

if __name__ == "__main__":
    sys.exit(main())
