"""The ``masksearch`` console script."""
