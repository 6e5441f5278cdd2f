"""Performance code the runtimes lack (INT4-at-INT8-speed rewrites, Triton kernels): arrives with the quantized export."""

from deploy_robust.kernels.int4_widen import widen_int4_conv_weights

__all__ = ["widen_int4_conv_weights"]
