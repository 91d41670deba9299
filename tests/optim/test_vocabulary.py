"""The rule vocabulary: every entry of the one table, in its NumPy, numba and CUDA forms, gives the same bits.

Each function is driven with every combination of NaN, signed zeros, infinities, subnormals, huge and
ordinary values, in float32 and float64; the numba form runs compiled, the CUDA form runs as the same
C source compiled on the host (host_cuda.py). Results must agree bit for bit, NaNs included, except
which of two NaN inputs propagates (IEEE 754 leaves that open): there the result must be NaN.
"""

import itertools

import numpy as np
import pytest

from lucid.optim import _backend_numba, _vocabulary
from lucid.optim._vocabulary import WORDS

from .host_cuda import compile_functions, needs_gxx


def special_values(dtype):
    info = np.finfo(dtype)
    values = [np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, info.smallest_subnormal, -info.smallest_subnormal,
              info.tiny / 3, info.tiny, info.max, -info.max, info.max / 7, 1.0, -1.0, 0.5, -0.5,
              np.nextafter(dtype(0.5), dtype(0)), 0.1, 2.0, -3.0]
    return np.array(values, dtype=dtype)


def arguments(word, dtype):
    """Every combination of special values (booleans for `cond`), one array per argument."""
    floats = special_values(dtype)
    pools = [np.array([True, False]) if arg == "cond" else floats for arg in word.args]
    combos = list(itertools.product(*(range(len(pool)) for pool in pools)))
    index = np.array(combos).T
    return [pool[ix] for pool, ix in zip(pools, index)]


def bits(array):
    array = np.ascontiguousarray(array)
    return array.view(np.uint64 if array.dtype == np.float64 else np.uint32)


def numpy_form(word, args):
    with np.errstate(all="ignore"):
        out = np.asarray(word.numpy(*args))
        if word.name == "lerp":  # rules pass the weight as a scalar: that path must agree too
            scalar = np.empty_like(out)
            for w in np.unique(bits(args[2])):
                rows = bits(args[2]) == w
                weight = args[2][rows][0]
                scalar[rows] = word.numpy(args[0][rows], args[1][rows], weight, args[3][rows])
            # NumPy's scalar-operand loops may swap a commutative op's operands, so when two NaNs meet
            # the sign of the NaN that wins can differ: here NaN only has to stay NaN
            np.testing.assert_array_equal(scalar, out, err_msg="lerp: scalar weight path")
    return out


NUMBA_MODULE = '''
import numba
import numpy as np

_T = np.{dtype}

{vocabulary}

{runners}
'''


def numba_forms(dtype):
    runners = []
    for word in WORDS:
        args = ", ".join(word.args)
        call = ", ".join(f"{a}[i]" for a in word.args)
        runners.append(f"@numba.njit(cache=True)\ndef run_{word.name}(out, {args}):\n"
                       f"    for i in range(out.shape[0]):\n        out[i] = {word.name}({call})\n")
    source = NUMBA_MODULE.format(dtype=np.dtype(dtype).name, vocabulary=_vocabulary.numba_source(),
                                 runners="\n\n".join(runners))
    return _backend_numba._import_generated(source, f"vocabulary_{np.dtype(dtype).name}")


def cuda_functions():
    functions = []
    for word in WORDS:
        params = ", ".join(f"const unsigned char* {a}" if a == "cond" else f"const T* {a}" for a in word.args)
        call = ", ".join(f"{a}[i] != 0" if a == "cond" else f"{a}[i]" for a in word.args)
        functions.append(f'extern "C" void run_{word.name}(long n, T* out, {params}) {{\n'
                         f"    for (long i = 0; i < n; ++i) out[i] = lucid_{word.name}({call});\n}}\n")
    return functions


@pytest.fixture(scope="module")
def host_libraries(tmp_path_factory):
    libraries = {}
    for dtype, ctype in ((np.float32, "float"), (np.float64, "double")):
        libraries[dtype] = compile_functions(cuda_functions(), tmp_path_factory.mktemp(ctype), ctype=ctype)
    return libraries


@needs_gxx
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("word", WORDS, ids=[w.name for w in WORDS])
def test_every_word_gives_the_same_bits_in_numpy_numba_and_cuda(word, dtype, host_libraries):
    import ctypes
    args = arguments(word, dtype)
    expected = numpy_form(word, args)
    assert expected.dtype == dtype
    compiled = np.empty_like(expected)
    getattr(numba_forms(dtype), f"run_{word.name}")(compiled, *args)
    host = np.empty_like(expected)
    pointers = [np.ascontiguousarray(a, dtype=np.uint8 if a.dtype == bool else dtype) for a in args]
    function = getattr(host_libraries[dtype], f"run_{word.name}")
    function.argtypes = None
    function(ctypes.c_long(host.size), host.ctypes.data_as(ctypes.c_void_p),
             *(p.ctypes.data_as(ctypes.c_void_p) for p in pointers))
    # IEEE 754 leaves open which NaN an operation on two NaNs returns, and compilers may commute
    # operands: where two or more inputs are NaN, a NaN result only has to be NaN. Elsewhere: same bits.
    several_nans = sum(np.isnan(a) for a in args if a.dtype != bool) >= 2
    exempt = several_nans & np.isnan(expected)
    for name, result in (("numba", compiled), ("cuda", host)):
        differ = (bits(result) != bits(expected)) & ~(exempt & np.isnan(result))
        mismatch = np.flatnonzero(differ)
        if mismatch.size:
            k = mismatch[0]
            raise AssertionError(f"{word.name} {np.dtype(dtype).name}: {name} form differs from NumPy at "
                                 f"{[a[k] for a in args]}: {result[k]!r} vs {expected[k]!r} "
                                 f"({mismatch.size} of {expected.size} differ)")


def test_sign_follows_torch_on_nan_and_signed_zero():
    sign = _vocabulary.NUMPY["sign"]
    out = sign(np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, -5e-324]))
    assert np.signbit(out).tolist() == [False, False, False, True, False, True]
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, -1.0, 1.0, -1.0])


def test_maximum_and_minimum_propagate_nan_from_either_side():
    maximum, minimum = _vocabulary.NUMPY["maximum"], _vocabulary.NUMPY["minimum"]
    a, b = np.array([np.nan, 1.0, -0.0]), np.array([1.0, np.nan, 0.0])
    assert np.isnan(maximum(a, b)[:2]).all() and np.isnan(minimum(a, b)[:2]).all()
    assert np.signbit(maximum(a, b)[2]) and np.signbit(minimum(a, b)[2])  # torch keeps the first of equals


def test_the_table_generates_every_form():
    source, preamble = _vocabulary.numba_source(), _vocabulary.cuda_preamble()
    for word in WORDS:
        assert f"def {word.name}(" in source
        assert f"lucid_{word.name}(" in preamble
        assert _vocabulary.NUMPY[word.name] is word.numpy
