"""Exporters: torch module -> ONNX graphs (float now; Q/DQ profiles, INT4 packing and TensorRT engines build on these)."""

from deploy_robust.exporters.float_onnx import export_float_onnx

__all__ = ["export_float_onnx"]
