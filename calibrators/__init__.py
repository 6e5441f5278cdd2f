"""Calibrators (min-max, percentile, entropy, MSE) for quantized export: arrive with the INT8/INT4 export issue."""
