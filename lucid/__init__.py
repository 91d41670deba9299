"""lucid: a small deep-learning library on NumPy (CuPy on a GPU), with PyTorch's API.

Public names only; each lives in the module that owns it.
"""

from . import dtypes
from ._version import __version__
from ._backend import gpu_available
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .creation import (arange, empty, eye, full, full_like, ones, ones_like, rand, randint, randn, tensor,
                       zeros, zeros_like)
from .dtypes import (bool_, float16, float32, float64, get_default_dtype, int8, int16, int32, int64,
                     set_default_dtype, uint8)
from .ops import (abs, amax, amin, argmax, argmin, clip, concatenate, cos, exp, flatten, log, logsumexp, matmul,
                  max, maximum, mean, min, minimum, permute, relu, reshape, sigmoid, sin, sqrt, squeeze, stack,
                  sum, tanh, transpose, unsqueeze, var, where)
from .random import manual_seed
from ._threads import get_num_threads, set_num_threads
from .tensor import Tensor
from .serialization import load, save
from . import data, datasets, gpu, nn, optim

cat = concatenate
clamp = clip

