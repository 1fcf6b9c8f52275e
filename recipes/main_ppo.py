"""``python -m masksearch.recipes.main_ppo <hydra overrides>``: verl's ``main_ppo`` after our preflight.

verl's own entry works too (our plugin loads on ``import verl``); this one adds the checks of
``preflight`` so a bad model path or a wrong verl version fails in a second with one line.
"""

from __future__ import annotations

import sys

from masksearch.core.errors import UserFacingError
from masksearch.recipes.preflight import run_preflight


def main() -> int:
    try:
        run_preflight(sys.argv[1:])
    except UserFacingError as exc:
        print(f"masksearch: error: {exc}", file=sys.stderr)
        return 2
    from verl.trainer.main_ppo import main as verl_main

    verl_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
