"""Model ingestion: every supported file becomes an nn.Module in eval mode plus an InputSpec.

`load_model` reads the file formats (TorchScript, torch.export, checkpoints, ONNX) and the
self-describing model files of each model kind (trained, DQ, GDWS, EMPIR), so it sits above
the model kinds; what they share with it (LoadedModel, checkpoint reading, architectures)
lives one layer down in `deploy_robust.model`.
"""

from deploy_robust.ingest.loader import load_model
from deploy_robust.model import LoadedModel, SpecOverrides

__all__ = ["LoadedModel", "SpecOverrides", "load_model"]
