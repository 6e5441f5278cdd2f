"""Calibration memory is bounded independently of the number of images (issue figure: <= 1.5x for 10x images)."""

import sys

import pytest

from tests.conftest import REPO, shared_path


@pytest.mark.slow  # a real-data memory measurement (~35 s)
@pytest.mark.shared_data
def test_entropy_calibration_peak_rss_is_flat_in_the_number_of_images():
    shared_path("datasets", "cifar10_train_first1017_per_batch.npz")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from calibration_memory import peak_rss_kib

    small, large = peak_rss_kib(500), peak_rss_kib(5000)
    assert large["peak_rss_kib"] <= 1.5 * small["peak_rss_kib"]
