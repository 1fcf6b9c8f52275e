import sys

from masksearch.recipes.learn.main import main

sys.exit(main())
