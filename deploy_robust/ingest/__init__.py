"""Model ingestion: every supported file becomes an nn.Module in eval mode plus an InputSpec."""

from deploy_robust.ingest.loader import LoadedModel, SpecOverrides, load_model

__all__ = ["LoadedModel", "SpecOverrides", "load_model"]
