"""Shared pieces of the GPU tests: the skip mark (naming why there is no GPU), and a busy kernel."""

import pytest

import lucid
from gpu_spin import busy_gpu  # noqa: F401 (re-exported)

needs_gpu = pytest.mark.skipif(not lucid.gpu_available(), reason=f"needs a CUDA GPU: {lucid.gpu.unavailable_reason()}")
GPU = [pytest.mark.gpu, needs_gpu]  # the pytestmark of a module of GPU tests
