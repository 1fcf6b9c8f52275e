import sys

from masksearch.recipes.dapo_ramp.main import main

sys.exit(main())
