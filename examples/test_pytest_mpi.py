"""Testing multi-rank code with pytest-mpi: a file to copy into your own tests.

    python -m pytest examples/test_pytest_mpi.py                                 # one process: mpi tests skip
    mpiexec -n 2 python -m mpi4py -m pytest --with-mpi examples/test_pytest_mpi.py   # every rank runs every test

`@pytest.mark.mpi(min_size=2)` marks a test that needs at least 2 ranks: pytest-mpi skips it without
--with-mpi, or when fewer ranks were started. Every rank runs the same tests in the same order, so
a collective in one test meets the same collective on the other ranks. `mpi_tmp_path` is one
directory shared by all ranks (rank 0's tmp_path, broadcast), where the plain `tmp_path` would give
each rank its own. `python -m mpi4py` ends the whole job if one rank fails outside a test, instead
of leaving the others waiting.
"""

import numpy as np
import pytest

import lucid
from lucid import nn, optim

import distributed
from distributed import checkpoint


def make_model():
    lucid.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))


def train_a_little(model, optimizer, steps=3):
    """Each rank trains on its own data; the DistributedOptimizer averages the gradients."""
    rng = np.random.default_rng(distributed.rank())
    for _ in range(steps):
        x = lucid.tensor(rng.standard_normal((4, 8)).astype(np.float32))
        y = lucid.tensor(rng.integers(0, 2, 4))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_runs_on_every_rank_and_in_one_process():
    assert 0 <= distributed.rank() < distributed.size()


@pytest.mark.mpi(min_size=2)
def test_the_ranks_see_each_other():
    assert distributed.size() >= 2
    assert distributed.allgather_object(distributed.rank()) == list(range(distributed.size()))


@pytest.mark.mpi(min_size=2)
def test_training_keeps_the_replicas_identical():
    model = make_model()
    optimizer = distributed.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1),
                                                 named_parameters=model.named_parameters())
    train_a_little(model, optimizer)
    mine = np.concatenate([p.data.ravel() for p in model.parameters()])
    everyone = distributed.allgather_object(mine)
    for other in everyone[1:]:
        np.testing.assert_array_equal(other, everyone[0])


@pytest.mark.mpi(min_size=2)
def test_a_sharded_checkpoint_in_a_shared_directory(mpi_tmp_path):
    model = make_model()
    optimizer = distributed.DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-2),
                                                 named_parameters=model.named_parameters(), shard_state=True)
    train_a_little(model, optimizer)
    checkpoint.save(mpi_tmp_path / "ckpt", model=model, optimizer=optimizer, extra={"steps": 3})

    restored = make_model()
    fresh = distributed.DistributedOptimizer(optim.Adam(restored.parameters(), lr=1e-2),
                                             named_parameters=restored.named_parameters(), shard_state=True)
    assert checkpoint.load(mpi_tmp_path / "ckpt", model=restored, optimizer=fresh) == {"steps": 3}
    for saved, loaded in zip(model.parameters(), restored.parameters()):
        np.testing.assert_array_equal(saved.data, loaded.data)
    assert fresh.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
