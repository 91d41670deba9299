"""distributed.comm.use_world: a communicator for one block, then whatever was there before (or none)."""

import pytest

import distributed
from distributed.comm import SelfComm, use_world


def test_the_block_sees_the_communicator_and_the_previous_one_comes_back():
    outer = distributed.init()
    mine = SelfComm()
    with use_world(mine) as inside:
        assert inside is mine and distributed.init() is mine
        assert distributed.DistributedSampler(range(4)).num_replicas == 1
    assert distributed.init() is outer


def test_none_set_up_before_means_none_after(monkeypatch):
    from distributed import comm as comm_module
    monkeypatch.setattr(comm_module, "_world", None)  # as in a fresh process (restored after the test)
    assert not distributed.is_initialized()
    with use_world(SelfComm()):
        with use_world(SelfComm()) as inner:
            assert distributed.init() is inner
        assert distributed.is_initialized()
    assert not distributed.is_initialized()  # a later init() decides afresh


def test_restored_after_an_exception_and_rejects_what_is_not_a_communicator():
    outer = distributed.init()
    with pytest.raises(RuntimeError, match="boom"):
        with use_world(SelfComm()):
            raise RuntimeError("boom")
    assert distributed.init() is outer
    with pytest.raises(TypeError, match="takes a Communicator"):
        with use_world("world"):
            pass
