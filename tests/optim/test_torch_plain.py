"""Muon against torch's own bfloat16 Newton-Schulz, and swa_utils against torch.optim.swa_utils (skipped without torch).

(Muon against torch's algorithm with the iteration in the parameter's dtype runs on PyTorch's test
configurations in test_torch_configs.py.)
"""

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim import swa_utils

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.mark.parametrize("kwargs", [{}, dict(lr=0.02, nesterov=False, adjust_lr_fn="match_rms_adamw")])
def test_muon_is_within_bfloat16_precision_of_torch(kwargs):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((16, 8), (8, 32))]
    ours = [nn.Parameter(a.copy()) for a in arrays]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    lo, to = optim.Muon(ours, **kwargs), torch.optim.Muon(theirs, **kwargs)
    for _ in range(5):
        for a, b in zip(ours, theirs):
            g = rng.standard_normal(a.shape).astype(np.float32)
            a.grad, b.grad = g.copy(), torch.from_numpy(g)
        lo.step()
        to.step()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.data, b.detach().numpy(), atol=1e-2, rtol=0)


def twin_models():
    """A lucid and a torch Linear + BatchNorm1d with the same weights."""
    lucid.manual_seed(0)
    ours = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        b.data.copy_(torch.from_numpy(a.data.copy()))
    return ours, theirs


def perturb(ours, theirs, seed):
    rng = np.random.default_rng(seed)
    for a, b in zip(list(ours.parameters()) + list(ours.buffers()), list(theirs.parameters()) + list(theirs.buffers())):
        if a.data.dtype.kind == "f":
            value = rng.standard_normal(a.shape).astype(a.data.dtype)
            a.data[...] = value
            b.data.copy_(torch.from_numpy(value.copy()))


AVERAGING = {
    "swa": lambda m: {},
    "ema_avg_fn": lambda m: {"avg_fn": m.get_ema_avg_fn(0.9)},
    "ema_multi_avg_fn": lambda m: {"multi_avg_fn": m.get_ema_multi_avg_fn(0.9)},
    "swa_multi_avg_fn": lambda m: {"multi_avg_fn": m.get_swa_multi_avg_fn()},
    "swa_avg_fn": lambda m: {"avg_fn": m.get_swa_avg_fn()},
}


@pytest.mark.parametrize("use_buffers", [False, True])
@pytest.mark.parametrize("kind", sorted(AVERAGING))
def test_averaged_model_equals_torch(kind, use_buffers):
    ours, theirs = twin_models()
    mine = swa_utils.AveragedModel(ours, use_buffers=use_buffers, **AVERAGING[kind](swa_utils))
    reference = torch.optim.swa_utils.AveragedModel(theirs, use_buffers=use_buffers,
                                                    **AVERAGING[kind](torch.optim.swa_utils))
    for seed in range(5):
        perturb(ours, theirs, seed)
        if kind == "swa_multi_avg_fn" and use_buffers and seed == 1:  # integer buffers: both refuse
            with pytest.raises(RuntimeError, match="Integer division"):
                mine.update_parameters(ours)
            with pytest.raises(RuntimeError, match="Integer division"):
                reference.update_parameters(theirs)
            return
        mine.update_parameters(ours)
        reference.update_parameters(theirs)
    pairs = list(zip(mine.module.parameters(), reference.module.parameters()))
    pairs += list(zip(mine.module.buffers(), reference.module.buffers()))
    for a, b in pairs:
        np.testing.assert_allclose(np.asarray(a.data, dtype=np.float64), b.detach().numpy().astype(np.float64),
                                   rtol=1e-6, atol=1e-7)
    assert int(mine.n_averaged.data) == int(reference.n_averaged)


def test_update_bn_equals_torch():
    ours, theirs = twin_models()
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((8, 3)).astype(np.float32) for _ in range(5)]
    swa_utils.update_bn([lucid.Tensor(b) for b in batches], ours)
    torch.optim.swa_utils.update_bn([torch.from_numpy(b) for b in batches], theirs)
    for a, b in zip(ours.buffers(), theirs.buffers()):
        np.testing.assert_allclose(np.asarray(a.data, dtype=np.float64), b.numpy().astype(np.float64),
                                   rtol=1e-5, atol=1e-6)
