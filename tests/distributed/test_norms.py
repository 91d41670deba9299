"""distributed.norms: partial sums in float64 a chunk at a time (no float64 copy of a whole gradient), combined
across arrays like one array's norm."""

import tracemalloc

import numpy as np
import pytest

from distributed import norms


def _reference(arrays, norm_type):
    values = np.concatenate([np.abs(np.asarray(a, np.float64)).reshape(-1) for a in arrays])
    if norm_type == float("inf"):
        return float(values.max(initial=0.0))
    return float((values ** norm_type).sum() ** (1.0 / norm_type))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, float("inf")])
def test_the_norm_of_several_arrays_across_chunk_boundaries_is_the_float64_norm(norm_type):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) * 1e3 for n in (norms.CHUNK * 2 + 17, 5, 0, norms.CHUNK)]
    arrays.append(rng.standard_normal((7, 3)).astype(np.float64))
    np.testing.assert_allclose(norms.global_norm(arrays, norm_type), _reference(arrays, norm_type), rtol=1e-12)


def test_no_norm_of_nothing_and_nan_propagates():
    assert norms.global_norm([], 2.0) == 0.0
    assert norms.global_norm([np.zeros(0, np.float32)], float("inf")) == 0.0
    bad = np.ones(norms.CHUNK + 3, np.float32)
    bad[-1] = np.nan
    for norm_type in (2.0, 1.0, float("inf")):
        assert np.isnan(norms.global_norm([np.ones(4, np.float32), bad], norm_type))
        assert np.isnan(norms.global_norm([bad, np.ones(4, np.float32)], norm_type))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_a_partial_allocates_a_chunk_not_a_float64_copy_of_the_gradient(norm_type):
    grad = np.ones(4_000_000, np.float32)  # 16 MB; a float64 copy would be 32 MB
    tracemalloc.start()
    try:
        norms.partial_norm(grad, norm_type)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 4 * norms.CHUNK * 8, peak

