"""gpu_check: what every stage shares: the device it checks, the quick switch, the project's tests on
the import path, and moving arrays to that device and back through lucid's public names.

Environment: LUCID_CHECK_DEVICE ("gpu", the default; "cpu" is the dry run that needs no GPU),
LUCID_CHECK_QUICK=1 (a few cases per stage), PROJECT (the project directory; default: the one this
file is in).
"""
import os
import sys

import lucid

DEVICE = os.environ.get("LUCID_CHECK_DEVICE", "gpu")
QUICK = os.environ.get("LUCID_CHECK_QUICK") == "1"
PROJECT = os.environ.get("PROJECT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if PROJECT not in sys.path:
    sys.path.insert(0, PROJECT)  # the stages reuse the test tables (tests/optim/conftest.py, cuda_cases.py)


def to_device(array, device: str = DEVICE):
    """`array` (NumPy or CuPy) as an array on `device`."""
    return lucid.Tensor(array, device=device).data


def to_host(array):
    """`array` (a NumPy or CuPy array, or a number) as a NumPy array."""
    return lucid.Tensor(array).numpy()


def device_of(value) -> str:
    """"cpu", "gpu" or "gpu:N" for an array; "cpu" for anything else (a number, None)."""
    return lucid.Tensor(value).device if hasattr(value, "shape") else "cpu"
