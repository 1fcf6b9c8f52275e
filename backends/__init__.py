"""CPU support for verl 0.9.1: device platform, ``hf`` rollout, and the few verl patches we need."""
