"""What a model is once loaded, and the file formats the pipeline writes: weights-only checkpoints,
architectures (built-in names or the user's code, with the opt-in that code needs)."""

from deploy_robust.model.loaded import LoadedModel, PickOutput, SpecOverrides, describe_layers

__all__ = ["LoadedModel", "PickOutput", "SpecOverrides", "describe_layers"]
