import numpy as np
import pytest

from deploy_robust.data.dataset import Dataset
from deploy_robust.errors import UserError


def _uint8(n=10):
    rng = np.random.default_rng(0)
    return Dataset(rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8), np.arange(n) % 3, "toy", 255.0)


def test_batches_are_float32_in_unit_range_and_cover_every_image():
    data = _uint8()
    batches = list(data.batches(4))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    x = np.concatenate([b[0] for b in batches])
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.array_equal(x, data.as_float())


def test_take_and_skip_split_without_overlap():
    data = _uint8()
    head, rest = data.take(3), data.skip(3)
    assert len(head) == 3 and len(rest) == 7 and np.array_equal(rest.labels, data.labels[3:])
    assert data.take(None) is data and data.skip(10) is None
    with pytest.raises(UserError, match="positive"):
        data.take(0)
    picked = data.subset(np.array([7, 2]))
    assert np.array_equal(picked.labels, data.labels[[7, 2]]) and np.array_equal(picked.images, data.images[[7, 2]])


def test_labels_are_checked_against_the_model():
    data = _uint8()
    data.check_labels(3, "model")
    with pytest.raises(UserError, match="label 2 is out of range for m, which has 2 classes"):
        data.check_labels(2, "m")


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((2, 1, 4, 4), np.float32), np.array([0.5, 1]), "integer class indices"),
        (np.zeros((2, 1, 4, 4), np.float32), np.array([0, -1]), ">= 0"),
        (np.full((2, 1, 4, 4), 200.0, np.float32), np.array([0, 1]), "look like 0..255"),
        (np.full((2, 1, 4, 4), np.nan, np.float32), np.array([0, 1]), "image 0 contains NaN"),
        (np.zeros((2, 1, 4, 4), np.float32), np.array([0, 1, 2]), "2 images but 3 labels"),
    ],
)
def test_bad_datasets_are_one_clear_error(images, labels, message):
    with pytest.raises(UserError, match=message):
        Dataset(images, labels, "bad")


def test_whole_float_labels_become_integers():
    data = Dataset(np.zeros((2, 1, 2, 2), np.float32), np.array([1.0, 0.0]), "f")
    assert data.labels.dtype == np.int64 and data.num_classes == 2 and data.shape == (1, 2, 2)
