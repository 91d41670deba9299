"""The 8x8 handwritten digits (UCI optdigits, 1,797 images), shipped with lucid: load_digits and Digits.

The data file and its licences are in `lucid/datasets/data/` (digits.csv.gz, LICENSE-digits.txt):
the UCI "Optical Recognition of Handwritten Digits" data by E. Alpaydin and C. Kaynak (CC BY 4.0),
in the copy that scikit-learn distributes (BSD-3-Clause).
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

from ..data.dataset import TensorDataset

N_SAMPLES = 1797
N_FEATURES = 64
N_CLASSES = 10


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load the whole digits data set, unscaled.

    Returns:
        (images, labels): images a float64 array of shape (1797, 64) holding the 8x8 pixel counts
        (integers 0..16) row by row; labels an int64 array of shape (1797,) with the digits 0..9.
    """
    source = resources.files(__package__).joinpath("data", "digits.csv.gz")
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float64)
    if table.shape != (N_SAMPLES, N_FEATURES + 1):
        raise RuntimeError(f"digits.csv.gz is damaged: expected a {N_SAMPLES}x{N_FEATURES + 1} table, "
                           f"found {table.shape}")
    return table[:, :N_FEATURES].copy(), table[:, N_FEATURES].astype(np.int64)


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices (each sorted) with round(test_fraction * n) test samples of every class.

    Stratifying keeps both splits' class balance equal to the whole set's; the seed fixes which
    samples of each class go to the test split.
    """
    rng = np.random.default_rng(seed)
    test = []
    for label in range(N_CLASSES):
        members = np.flatnonzero(labels == label)
        n_test = int(round(test_fraction * len(members)))
        test.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


class Digits(TensorDataset):
    """The digits as a dataset of (features, label) pairs, split into train and test parts.

    Sample i is `(x, y)`: x a float32 Tensor of 64 features (the 8x8 image row by row), y an int64
    0-d Tensor. The split is stratified by class and fixed by `seed`: the train and test parts of
    one seed are disjoint and together hold all 1,797 images (1,438 and 359 at the default 0.2).

    Args:
        train: the train part (True) or the test part (False).
        test_fraction: share of every class that goes to the test part, in (0, 1).
        seed: which samples form the test part.
        normalize: scale the features from 0..16 to [0, 1] (divided by 16); False keeps the counts.

    Attributes:
        data: the float32 feature array (n, 64); targets: the int64 labels (n,);
        indices: positions of these samples in `load_digits()`'s order; classes: the digits 0..9.
    """

    classes = list(range(N_CLASSES))

    def __init__(self, train: bool = True, test_fraction: float = 0.2, seed: int = 0,
                 normalize: bool = True) -> None:
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        images, labels = load_digits()
        train_idx, test_idx = _stratified_split(labels, float(test_fraction), seed)
        self.indices = train_idx if train else test_idx
        self.train = bool(train)
        features = images[self.indices].astype(np.float32)
        if normalize:
            features /= np.float32(16.0)
        self.data = features
        self.targets = labels[self.indices]
        super().__init__(self.data, self.targets)

    def __repr__(self) -> str:
        part = "train" if self.train else "test"
        return f"Digits({part}, {len(self)} samples)"
