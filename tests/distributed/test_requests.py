"""The Pipeline's `ready`: data whose buffer is not filled yet (a device-to-host copy, a kernel) waits in
line without blocking the caller, starts from a later call once it is ready, and a wait blocks on it
only when nothing else is in flight. (On a GPU, `ready` is a CUDA event: see test_gpu_comm.py.)"""

from distributed.requests import Pipeline

from .test_control import FakeRequest


class FakeReady:
    """Stands for a CUDA event: complete once `done` is set; `synchronize()` blocks until then."""

    def __init__(self, log, name):
        self.log, self.name, self.done = log, name, False

    def query(self):
        return self.done

    def synchronize(self):
        self.log.append(f"synchronize {self.name}")
        self.done = True


def starter(log, name):
    return lambda: (log.append(f"start {name}"), FakeRequest(log, name))[1]


def test_data_waits_for_its_buffer_without_blocking_the_submitter_and_keeps_its_place():
    log = []
    pipeline = Pipeline(in_flight=2)
    copy = FakeReady(log, "copy 1")
    pipeline.submit(starter(log, "data 1"), ready=copy, label="bucket 1")
    pipeline.submit(starter(log, "data 2"), ready=None, label="bucket 2")  # ready, but behind bucket 1
    pipeline.progress()
    assert log == []  # nothing started, nothing waited for
    copy.done = True  # the copy completed on the device meanwhile
    pipeline.progress()
    assert log == ["start data 1", "start data 2"]
    pipeline.drain()
    assert pipeline.completed == 2 and "synchronize copy 1" not in log


def test_a_later_submit_starts_the_data_whose_buffer_became_ready():
    """What overlaps backward: each gradient hook's submit starts the buckets whose copies are done."""
    log = []
    pipeline = Pipeline(in_flight=1)
    first, second = FakeReady(log, "copy 1"), FakeReady(log, "copy 2")
    pipeline.submit(starter(log, "data 1"), ready=first)
    first.done = True
    pipeline.submit(starter(log, "data 2"), ready=second)
    assert log == ["start data 1"]


def test_a_wait_with_nothing_in_flight_blocks_on_the_buffer_then_starts_it():
    log = []
    pipeline = Pipeline()
    copy = FakeReady(log, "copy")
    number = pipeline.submit(starter(log, "data"), lambda: log.append("finish"), ready=copy, label="bucket")
    pipeline.wait(number)
    assert log == ["synchronize copy", "start data", "wait data", "finish"]
    assert pipeline.waiting_on is None and pipeline.waiting_since is None


def test_a_wait_lets_the_data_in_flight_finish_before_blocking_on_the_next_buffer():
    log = []
    pipeline = Pipeline(in_flight=1)
    pipeline.submit(starter(log, "data 1"))
    copy = FakeReady(log, "copy 2")
    pipeline.submit(starter(log, "data 2"), ready=copy)
    pipeline.drain()
    assert log == ["start data 1", "wait data 1", "synchronize copy 2", "start data 2", "wait data 2"]
