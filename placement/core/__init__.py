"""The compiled problem every solver and kernel works on: arrays, the objective terms, a solution."""
