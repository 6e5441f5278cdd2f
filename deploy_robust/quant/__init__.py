"""Quantization: the arithmetic (scheme), precision plans, and the differentiable twin of a Q/DQ graph."""
