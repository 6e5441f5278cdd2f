"""Exporters: torch module -> float ONNX graph, then the Q/DQ rewrite for a target's profile (INT8, INT4 packing, trained
grids, TensorRT's placement rules, FP32 fallback). TensorRT engines are built by the runtime (runtimes.tensorrt_engine)."""

from deploy_robust.exporters.float_onnx import export_float_onnx

__all__ = ["export_float_onnx"]
