"""Performance code the runtimes lack (INT4-at-INT8-speed rewrites, Triton kernels): arrives with the quantized export."""

from deploy_robust.kernels.int4_widen import dequantize_small_int4_gemm_weights, widen_int4_conv_weights

__all__ = ["dequantize_small_int4_gemm_weights", "widen_int4_conv_weights"]
