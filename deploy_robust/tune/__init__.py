"""`deploy-robust tune`: the fastest bundle on a target runtime that keeps its verified robustness."""
