import gzip
import pickle
import struct

import numpy as np
import pytest

from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_uint8_nchw_is_scaled_to_unit_range(image_npz):
    ds = load_dataset(image_npz, (3, 16, 16))
    x, y = next(ds.batches(8))
    assert x.dtype == np.float32 and x.shape == (8, 3, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert len(ds) == 40 and y.dtype == np.int64


def test_nhwc_is_transposed(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    ds = load_dataset(_npz(tmp_path, x=x, y=np.arange(4)), (3, 16, 16))
    np.testing.assert_array_equal(ds.images, x.transpose(0, 3, 1, 2))


def test_grayscale_nhw_gets_a_channel(tmp_path):
    ds = load_dataset(_npz(tmp_path, x=np.zeros((3, 28, 28), np.uint8), y=np.arange(3)), (1, 28, 28))
    assert ds.shape == (1, 28, 28)


def test_float_images_in_unit_range_are_kept(tmp_path):
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    ds = load_dataset(_npz(tmp_path, x=x, y=np.arange(5)))
    np.testing.assert_array_equal(next(ds.batches(5))[0], x)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x=np.full((3, 1, 4, 4), np.nan, np.float32), y=np.arange(3)), "image 0 contains NaN"),
        (dict(x=np.zeros((0, 1, 4, 4), np.uint8), y=np.zeros(0, np.int64)), "empty"),
        (dict(x=np.zeros((3, 1, 4, 4), np.uint8)), "no labels"),
        (dict(x=np.zeros((3, 1, 4, 4), np.uint8), y=np.arange(2)), "3 images but 2 labels"),
        (dict(x=np.full((3, 1, 4, 4), 200.0, np.float32), y=np.arange(3)), "must lie in \\[0, 1\\].*divide by 255"),
        (dict(x=np.zeros((3, 1, 4, 4), np.uint8), y=np.array([0, -1, 2])), "labels must be >= 0"),
        (dict(y=np.arange(3)), "no 'x' array"),
    ],
)
def test_bad_datasets_are_user_errors(tmp_path, arrays, message):
    with pytest.raises(UserError, match=message):
        load_dataset(_npz(tmp_path, **arrays))


def test_nan_is_found_deep_in_the_set(tmp_path):
    x = np.random.default_rng(0).random((10, 1, 4, 4)).astype(np.float32)
    x[7, 0, 2, 2] = np.inf
    with pytest.raises(UserError, match="image 7 contains NaN or Inf"):
        load_dataset(_npz(tmp_path, x=x, y=np.arange(10)))


def test_wrong_shape_for_the_model(image_npz):
    with pytest.raises(UserError, match="images have shape \\(3, 16, 16\\) but the model takes 1x28x28"):
        load_dataset(image_npz, (1, 28, 28))


def test_cifar_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [1, 2, 3, 4, 5, 6]}, f, protocol=2)
    ds = load_dataset(tmp_path, (3, 32, 32))
    assert len(ds) == 6 and ds.labels.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(ds.images[0].reshape(-1), data[0])


def test_cifar_batch_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [1]}, f, protocol=2)
    with pytest.raises(UserError, match="refusing to load"):
        load_dataset(tmp_path)
    assert not (tmp_path / "pwned").exists()


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_gz(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    for source in (tmp_path / "t10k-images-idx3-ubyte.gz", tmp_path):
        ds = load_dataset(source, (1, 28, 28))
        np.testing.assert_array_equal(ds.images[:, 0], images)
        assert ds.labels.tolist() == [0, 1, 2, 3, 4]


def test_truncated_idx_is_a_user_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 5, 28, 28) + b"\x00" * 100)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    with pytest.raises(UserError, match="truncated idx"):
        load_dataset(path)


def test_image_folder(tmp_path):
    from PIL import Image

    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), value + i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset(tmp_path, (3, 8, 8))
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.images[2, 0, 0, 0] == 200


def test_builtin_digits_split_is_fixed_and_disjoint():
    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    assert (len(train), len(test)) == (1437, 360) and train.shape == (1, 8, 8)
    assert np.array_equal(load_dataset("digits").images, test.images)
    assert next(test.batches(360))[0].max() == 1.0


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(UserError, match="dataset not found"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="unknown dataset format"):
        load_dataset(tmp_path / "notes.txt")


def test_take_limits_the_set(image_npz):
    assert len(load_dataset(image_npz, limit=7)) == 7
