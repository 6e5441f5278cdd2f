"""The TensorRT loader: a bundle's ONNX graph -> a serialized engine (TensorRT 10+ Python API), cached.

The network is created STRONGLY_TYPED: every precision decision is already in the ONNX
(Q/DQ nodes, FP16 casts), as TensorRT 11, which dropped the builder precision flags,
requires. The dynamic batch dimension gets an optimization profile (min 1, opt and max
given). Written against the documented API; exercised only where TensorRT is installed
(tests marked `tensorrt`): not run in the sessions that wrote it (no TensorRT there).
"""

from __future__ import annotations

from pathlib import Path

from deploy_robust.errors import UserError


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(
            "the tensorrt backend needs TensorRT: pip install tensorrt (on a machine with an NVIDIA GPU)"
        ) from None
    return trt


def build_engine(
    onnx_path: Path,
    input_shape: tuple[int, ...],
    *,
    opt_batch: int = 32,
    max_batch: int = 256,
    fixed_batch: int | None = None,
    workspace_gib: float = 2.0,
) -> bytes:
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    if fixed_batch:
        shape = (fixed_batch, *input_shape)
        profile.set_shape(name, shape, shape, shape)
    else:
        profile.set_shape(name, (1, *input_shape), (opt_batch, *input_shape), (max_batch, *input_shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return bytes(serialized)


def load_or_build_engine(
    onnx_path: Path, input_shape: tuple[int, ...], engine_path: Path, *, fixed_batch: int | None = None
) -> bytes:
    """The cached engine at `engine_path`, else a new one (cached there when the bundle is writable;
    engines are specific to the GPU and the TensorRT version)."""
    if engine_path.is_file():
        return engine_path.read_bytes()
    blob = build_engine(onnx_path, input_shape, fixed_batch=fixed_batch)
    try:
        engine_path.write_bytes(blob)
    except OSError:
        pass
    return blob
