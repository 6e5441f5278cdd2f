import importlib.util

import pytest

from deploy_robust.errors import UserError
from deploy_robust.runtimes.tensorrt_engine import import_tensorrt, load_or_build_engine


def test_a_cached_engine_is_read_back_without_building(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine")
    assert load_or_build_engine(tmp_path / "model.onnx", (3, 32, 32), engine) == b"serialized engine"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT installed")
def test_without_tensorrt_building_says_what_to_install(tmp_path):
    with pytest.raises(UserError, match="pip install tensorrt"):
        import_tensorrt()
    with pytest.raises(UserError, match="pip install tensorrt"):
        load_or_build_engine(tmp_path / "model.onnx", (3, 32, 32), tmp_path / "missing.engine")
