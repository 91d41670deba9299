"""distributed.runtime.select_gpu, the rule behind one GPU per rank, without a GPU: the device count and
the device switch of lucid._backend are replaced by a recording stand-in (the real ones need CUDA; the
mpiexec jobs in tests/mpi/test_runtime.py check the same rule on real GPUs, marked `gpu`)."""

from types import SimpleNamespace

import pytest

from distributed import runtime
from lucid import _backend


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this node has `gpus.count` GPUs; `gpus.selected` records each set_device call."""
    state = SimpleNamespace(count=0, chosen=None, selected=[])
    monkeypatch.setattr(_backend, "device_count", lambda: state.count)
    monkeypatch.setattr(_backend, "chosen_device", lambda: state.chosen)
    monkeypatch.setattr(_backend, "set_device", lambda index, chosen=True: state.selected.append((index, chosen)))
    return state


@pytest.mark.parametrize("local_rank, count, index", [(0, 1, 0), (1, 1, 0), (1, 2, 1), (5, 4, 1), (3, 8, 3)])
def test_each_rank_takes_gpu_local_rank_modulo_the_count(gpus, local_rank, count, index):
    gpus.count = count
    assert runtime.select_gpu(SimpleNamespace(rank=7, local_rank=local_rank, local_size=8)) == index
    assert gpus.selected == [(index, False)]  # not the user's choice: applied when lucid first uses the GPU


def test_no_gpu_selects_nothing(gpus):
    assert runtime.select_gpu(SimpleNamespace(rank=0, local_rank=1, local_size=2)) is None
    assert gpus.selected == []


def test_a_gpu_the_user_chose_is_kept(gpus):
    gpus.count, gpus.chosen = 4, 2
    assert runtime.select_gpu(SimpleNamespace(rank=1, local_rank=1, local_size=4)) is None
    assert gpus.selected == []
