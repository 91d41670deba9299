"""Tests of the shipped digits data set: load_digits and the Digits train/test split."""

from importlib import resources

import numpy as np
import pytest

from lucid.data import DataLoader
from lucid.datasets import Digits, load_digits

# The per-digit counts of the 1,797 images (as scikit-learn reports them).
COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_data_files_ship_inside_the_package():
    data = resources.files("lucid.datasets").joinpath("data")
    assert data.joinpath("digits.csv.gz").is_file()
    assert "CC BY 4.0" in data.joinpath("LICENSE-digits.txt").read_text()


def test_load_digits_shapes_and_values(digits):
    images, labels = digits
    assert images.shape == (1797, 64) and images.dtype == np.float64
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert images.min() == 0 and images.max() == 16
    np.testing.assert_array_equal(images, np.round(images))
    assert np.bincount(labels).tolist() == COUNTS


def test_split_sizes_disjoint_and_complete():
    train, test = Digits(train=True), Digits(train=False)
    assert (len(train), len(test)) == (1438, 359)
    assert not set(train.indices.tolist()) & set(test.indices.tolist())
    assert sorted(np.concatenate([train.indices, test.indices]).tolist()) == list(range(1797))


def test_split_is_stratified(digits):
    test = Digits(train=False, test_fraction=0.2)
    expected = [round(0.2 * c) for c in COUNTS]
    assert np.bincount(test.targets, minlength=10).tolist() == expected


def test_split_is_deterministic_and_seeded():
    assert np.array_equal(Digits(train=False, seed=0).indices, Digits(train=False, seed=0).indices)
    assert not np.array_equal(Digits(train=False, seed=0).indices, Digits(train=False, seed=1).indices)


def test_features_scaled_and_matching_the_raw_rows(digits):
    images, labels = digits
    train = Digits()
    x, y = train[5]
    assert x.shape == (64,) and x.dtype == np.float32 and y.dtype == np.int64 and y.shape == ()
    assert 0.0 <= train.data.min() and train.data.max() <= 1.0
    i = train.indices[5]
    np.testing.assert_allclose(x.data, images[i] / 16.0, rtol=1e-6)
    assert y.item() == labels[i]
    raw = Digits(normalize=False)
    assert raw.data.dtype == np.float32 and raw.data.max() == 16.0


def test_digits_through_a_dataloader():
    loader = DataLoader(Digits(train=False), batch_size=100, shuffle=True, seed=0)
    sizes = [len(yb) for _, yb in loader]
    assert sizes == [100, 100, 100, 59]


def test_bad_test_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        Digits(test_fraction=1.0)
