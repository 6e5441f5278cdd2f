"""The ONNX op families the toolkit treats alike, named once.

A weighted op's second input is its weight: these are the layers `info` lists, that re-export maps back
to the user's own names, and whose MACs are counted. Precision plans lower the quantizable ones (a
ConvTranspose keeps its float weights); the matrix ops take INT4 as weight-only blocks.
"""

MATRIX_OPS = ("Gemm", "MatMul")
QUANTIZABLE_OPS = ("Conv", *MATRIX_OPS)
WEIGHTED_OPS = (*QUANTIZABLE_OPS, "ConvTranspose")
