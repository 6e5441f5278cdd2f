"""Issue 26, finding 6: inputs that used to end in a traceback (exit 1) are one line with exit 2, or run."""

from __future__ import annotations

import random

import onnx
import pytest


@pytest.mark.parametrize(
    "flag, value, said",
    [
        ("--threads", "2147483648", "must be at most 4096"),
        ("--streams", "99999", "must be at most 1024"),
        ("--device", "", "must name a device"),
    ],
)
def test_out_of_range_runtime_flags_are_one_line(cli, digits_bundle, flag, value, said):
    code, _, err = cli("eval", digits_bundle, "--data", "digits:test", "--n", "8", flag, value)
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("device", ["AUTO", "HETERO:CPU"])
def test_openvino_meta_devices_run(cli, digits_bundle, device):
    pytest.importorskip("openvino")
    code, out, err = cli(
        "eval", digits_bundle, "--data", "digits:test", "--n", "8", "--backend", "openvino", "--device", device
    )
    assert code == 0, err
    assert "accuracy" in out


def test_an_initializer_with_a_mutated_dtype_is_one_line(cli, digits_bundle, tmp_path):
    model = onnx.load(str(digits_bundle / "model.onnx"))
    failures = []
    for seed in range(12):
        mutated = onnx.ModelProto()
        mutated.CopyFrom(model)
        rng = random.Random(seed)
        rng.choice(mutated.graph.initializer).data_type = rng.choice([2, 3, 5, 6, 7, 9, 10, 11, 16])
        path = tmp_path / f"mutated{seed}.onnx"
        onnx.save(mutated, str(path))
        code, _, err = cli("info", path)
        if code not in (0, 2) or (code == 2 and len(err.strip().splitlines()) != 1):
            failures.append((seed, code, err[-200:]))
    assert failures == []
