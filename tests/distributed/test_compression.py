"""distributed.compression: Horovod's compress(array) -> (array, ctx) / decompress(array, ctx)."""

import numpy as np

from distributed import Compression


def test_compressors_have_horovods_shape():
    grad = np.linspace(-2, 2, 11, dtype=np.float32)
    wire, ctx = Compression.fp16.compress(grad)
    assert wire.dtype == np.float16 and ctx == np.float32
    back = Compression.fp16.decompress(wire, ctx)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, grad, rtol=1e-3)
    for array in (np.ones(3, np.float16), np.arange(3)):  # already float16, or not floating: unchanged
        wire, ctx = Compression.fp16.compress(array)
        assert wire is array and ctx is None and Compression.fp16.decompress(wire, ctx) is array
    wire, ctx = Compression.none.compress(grad)
    assert wire is grad and Compression.none.decompress(wire, ctx) is grad
