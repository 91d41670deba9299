"""SyncBatchNorm on every rank's share of a batch equals BatchNorm on the whole batch in one process:
the forward, the input and parameter gradients, and the running statistics (the same on every rank)."""

import numpy as np
import pytest

import lucid
from lucid import nn

import distributed
from distributed import SyncBatchNorm
from mpi_helpers import everywhere, my_share

pytestmark = pytest.mark.timeout(60, method="thread")

BATCH = 12
LAYOUTS = {"1d": (nn.BatchNorm1d, (BATCH, 3)), "1d-length": (nn.BatchNorm1d, (BATCH, 3, 5)),
           "2d": (nn.BatchNorm2d, (BATCH, 3, 2, 4))}


def pair(comm, kind, **options):
    """(BatchNorm, SyncBatchNorm) of float64, with the same random weight and bias."""
    bn_class, shape = LAYOUTS[kind]
    rng = np.random.default_rng(5)
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    ref = bn_class(shape[1], dtype=np.float64, **options)
    sync = SyncBatchNorm(shape[1], process_group=comm, dtype=np.float64, **options)
    for module in (ref, sync):
        if module.weight is not None:
            module.weight.data[...] = weight
            module.bias.data[...] = bias
    return ref, sync, shape


def batch(shape, step):
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)


@pytest.mark.parametrize("kind", sorted(LAYOUTS))
@pytest.mark.parametrize("momentum", [0.1, None])
def test_equals_batchnorm_on_the_whole_batch(comm, kind, momentum):
    ref, sync, shape = pair(comm, kind, momentum=momentum)
    for step in range(2):
        data, seed = batch(shape, step)
        x_full = lucid.Tensor(data, requires_grad=True)
        x = lucid.Tensor(my_share(data, comm), requires_grad=True)
        out_full, out = ref(x_full), sync(x)
        (out_full * lucid.Tensor(seed)).sum().backward()
        (out * lucid.Tensor(my_share(seed, comm))).sum().backward()  # the rank's part of the same loss
        np.testing.assert_allclose(out.data, my_share(out_full.data, comm), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(x.grad, my_share(x_full.grad, comm), rtol=1e-9, atol=1e-10)
        for name in ("weight", "bias"):
            mine = getattr(sync, name).grad.copy()
            distributed.allreduce(mine, distributed.Sum, comm=comm)  # what the optimizer would do, with Sum
            np.testing.assert_allclose(mine, getattr(ref, name).grad, rtol=1e-9, atol=1e-10)
            getattr(sync, name).grad = None
            getattr(ref, name).grad = None
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(sync, name).data, getattr(ref, name).data, rtol=1e-12)
        assert len(set(everywhere(comm, getattr(sync, name).data.tobytes()))) == 1
    sync.eval(), ref.eval()
    data, _ = batch(shape, 9)
    np.testing.assert_allclose(sync(lucid.Tensor(my_share(data, comm))).data,
                               my_share(ref(lucid.Tensor(data)).data, comm), rtol=1e-12)


def test_without_affine_or_running_statistics(comm):
    ref, sync, shape = pair(comm, "1d", affine=False, track_running_stats=False)
    data, _ = batch(shape, 0)
    assert sync.weight is None and sync.running_mean is None
    np.testing.assert_allclose(sync(lucid.Tensor(my_share(data, comm))).data,
                               my_share(ref(lucid.Tensor(data)).data, comm), rtol=1e-10, atol=1e-10)


def test_unequal_shares_use_the_global_count(comm):
    ref, sync, shape = pair(comm, "1d")
    data = np.random.default_rng(2).standard_normal((comm.size * (comm.size + 1) // 2 + 1, 3))
    cuts = np.cumsum([0] + [r + 1 for r in range(comm.size)])
    cuts[-1] = len(data)
    mine = data[cuts[comm.rank]:cuts[comm.rank + 1]]
    np.testing.assert_allclose(sync(lucid.Tensor(mine)).data, ref(lucid.Tensor(data)).data[cuts[comm.rank]:
                                                                                             cuts[comm.rank + 1]],
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sync.running_var.data, ref.running_var.data, rtol=1e-12)


def test_errors(comm):
    sync = SyncBatchNorm(3, process_group=comm)
    with pytest.raises(ValueError, match="expected at least 2D input \\(got 1D input\\)"):
        sync(lucid.Tensor(np.zeros(3, dtype=np.float32)))
    if comm.size > 1:
        with pytest.raises(ValueError, match="running_mean should contain 4 elements not 3"):
            sync(lucid.Tensor(np.zeros((2, 4), dtype=np.float32)))


def test_convert_sync_batchnorm_keeps_the_parameters_and_statistics():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(),
                          nn.Sequential(nn.Unflatten(1, (3, 1, 1)), nn.BatchNorm2d(3, momentum=None)))
    model[1].running_mean.data[...] = [1.0, 2.0, 3.0]
    model.eval()
    weight, mean = model[1].weight, model[1].running_mean
    converted = SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    assert isinstance(model[1], SyncBatchNorm) and isinstance(model[3][1], SyncBatchNorm)
    assert model[1].weight is weight and model[1].running_mean is mean and model[3][1].momentum is None
    assert not model[1].training and isinstance(model[0], nn.Linear)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias",
                                                               "3.1.weight", "3.1.bias"]
    single = SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(2))
    assert isinstance(single, SyncBatchNorm) and single.num_features == 2
