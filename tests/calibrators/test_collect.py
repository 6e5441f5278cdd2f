import json

import numpy as np
import pytest

from deploy_robust.calibrators.collect import calibrate, calibration_document, load_cache
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.exporters import export_float_onnx
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny


def _model():
    return export_float_onnx(make_tiny(), InputSpec((3, 16, 16), 5)).model


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8), rng.integers(0, 5, n), "d", 255.0)


def test_minmax_ranges_match_the_tensors_seen():
    model = _model()
    ranges = calibrate(model, ["input"], _data(), "minmax", batch_size=7)
    data = _data().as_float()
    assert ranges["input"] == (pytest.approx(float(data.min())), pytest.approx(float(data.max())))


def test_nan_batch_is_named():
    data = _data(20)
    images = data.images.astype(np.float32) / 255
    images[13, 0, 0, 0] = np.nan
    bad = Dataset.__new__(Dataset)  # bypass the loader's own check: calibration must catch it too
    bad.images, bad.labels, bad.name, bad.scale = images, data.labels, "bad", 1.0
    with pytest.raises(UserError, match="calibration batch 1 \\(images 8..15\\) contains NaN"):
        calibrate(_model(), ["input"], bad, "minmax", batch_size=8)


def test_cache_round_trip_and_refusals(tmp_path):
    ranges = {"a": (0.0, 1.0), "b": (-1.0, 2.0)}
    doc = calibration_document(
        ranges, method="mse", percentile=99.9, num_images=10, graph_sha256="abc", dataset="d", seed=0
    )
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(doc))
    loaded, _ = load_cache(path, "abc", ["a", "b"])
    assert loaded == ranges
    with pytest.raises(UserError, match="different model"):
        load_cache(path, "other", ["a"])
    with pytest.raises(UserError, match="lacks ranges"):
        load_cache(path, "abc", ["a", "c"])
    with pytest.raises(UserError, match="not found"):
        load_cache(tmp_path / "nope.json", "abc", ["a"])


def test_a_fixed_batch_graph_is_calibrated_in_chunks_on_exactly_the_given_images(tmp_path):
    import numpy as np
    from torch import nn

    from deploy_robust.calibrators.collect import stream_tensors
    from deploy_robust.data import Dataset
    from deploy_robust.exporters import export_float_onnx
    from deploy_robust.spec import InputSpec

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    spec = InputSpec((1, 6, 6), 2)
    fixed = export_float_onnx(model, spec, dynamic_batch=False, fixed_batch=4).model
    dynamic = export_float_onnx(model, spec).model
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (10, 1, 6, 6), dtype=np.uint8), np.zeros(10, int), "d", 255.0)
    name = [dynamic.graph.output[0].name]
    a = np.concatenate([v[name[0]] for v in stream_tensors(dynamic, name, data, 7, "t")])
    b = np.concatenate(
        [v[fixed.graph.output[0].name] for v in stream_tensors(fixed, [fixed.graph.output[0].name], data, 7, "t")]
    )
    assert a.shape == b.shape == (10, 2, 4, 4) and np.allclose(a, b, atol=1e-6)
