import sys

from masksearch.recipes.learn.main import main

if __name__ == "__main__":  # a spawned stage process (main.in_child) imports this module too
    sys.exit(main())
