"""Thread counts of lucid's CPU work: the BLAS and OpenMP pools (through threadpoolctl) and the compiled step.

`set_num_threads(n)` is the user's explicit choice (torch's name). `share_cores(n)` is what a
launcher-aware caller (`distributed.init()`) applies when several ranks share a machine: it limits
only the pools whose size the user did not choose, by the usual environment variables or by an
earlier `set_num_threads`.
"""

from __future__ import annotations

import os

# Which environment variables size which pool (OpenBLAS and MKL fall back to OMP_NUM_THREADS).
POOL_VARIABLES = {
    "blas": ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "OMP_NUM_THREADS"),
    "openmp": ("OMP_NUM_THREADS",),
    "kernels": ("NUMBA_NUM_THREADS",),
}

_explicit = None   # the last set_num_threads(n)
_shared = None     # the count share_cores() applied to every pool it limited


def set_num_threads(n: int) -> None:
    """Use `n` threads for BLAS, OpenMP and the compiled optimizer steps in this process.

    Takes precedence over what `distributed.init()` would choose for ranks sharing a machine.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads(): argument 'int' must be int, not {type(n).__name__}")
    if n < 1:
        raise RuntimeError("set_num_threads expects a positive integer")
    global _explicit
    _limit(("blas", "openmp", "kernels"), n)
    _explicit = n


def get_num_threads() -> int:
    """The threads lucid's CPU work uses: the last `set_num_threads`, else the share `distributed.init()`
    chose, else the BLAS pool's own size (every core by default)."""
    if _explicit is not None:
        return _explicit
    if _shared is not None:
        return _shared
    from threadpoolctl import threadpool_info
    sizes = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return sizes[0] if sizes else (os.cpu_count() or 1)


def user_choices() -> dict:
    """Pool -> why its size is the user's (an environment variable, or set_num_threads); pools absent are free."""
    if _explicit is not None:
        return {pool: f"lucid.set_num_threads({_explicit})" for pool in POOL_VARIABLES}
    chosen = {}
    for pool, variables in POOL_VARIABLES.items():
        named = [f"{v}={os.environ[v]}" for v in variables if os.environ.get(v, "").strip()]
        if named:
            chosen[pool] = named[0]
    return chosen


def share_cores(n: int) -> dict:
    """Limit every pool the user left alone to `n` threads; returns pool -> what happened to it."""
    n = max(1, int(n))
    chosen = user_choices()
    free = tuple(pool for pool in POOL_VARIABLES if pool not in chosen)
    if free:
        global _shared
        _limit(free, n)
        _shared = n
    return {pool: (f"kept ({chosen[pool]})" if pool in chosen else f"{n} threads") for pool in POOL_VARIABLES}


def _limit(pools: tuple, n: int) -> None:
    from threadpoolctl import threadpool_limits
    for pool in pools:
        if pool == "kernels":
            from .optim import set_kernel_threads
            set_kernel_threads(n)
        else:
            threadpool_limits(limits=n, user_api=pool)
