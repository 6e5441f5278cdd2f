"""Performance code the runtimes lack (INT4-at-INT8-speed rewrites, Triton kernels): arrives with the quantized export."""
