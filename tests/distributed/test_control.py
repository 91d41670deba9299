"""Control records and how an exchange settles (a pure function of every rank's record), and the
pipeline's gates: a control message finishes before the data behind it starts."""

import numpy as np
import pytest

from distributed import control
from distributed.control import Call, CollectiveMismatchError, JoinedError, Kind, settle
from distributed.requests import Pipeline


def gathered(*records):
    return b"".join(records)


def grads(bucket=0, count=10, step=3, owner=0):
    return control.record(Kind.ALLREDUCE, Call("gradients", step, bucket, owner), count, np.float32)


def joined(at=5):
    return control.record(Kind.JOINED, Call("join", bucket=at))


def test_agreeing_records_settle_without_error_whatever_the_informational_fields():
    outcome = settle(gathered(grads(step=3), grads(step=4), grads(step=3)))
    assert outcome.error is None and outcome.joined == () and outcome.contributors == 3
    assert control.describe(outcome.agreed) == "allreduce of 10 float32 ('gradients', step 3, bucket 0)"


@pytest.mark.parametrize("other, mentions", [
    (control.record(Kind.ALLREDUCE, Call("clip_grad_norm_", 3), 10, np.float32), "'clip_grad_norm_'"),
    (control.record(Kind.ALLREDUCE, Call("gradients", 3, 0, 0), 10, np.float64), "10 float64"),
    (control.record(Kind.ALLREDUCE, Call("gradients", 3, 0, 0), 11, np.float32), "11 float32"),
    (control.record(Kind.ALLGATHER, Call("gradients", 3, 0, 0), 10, np.float32), "allgather of 10"),
    (control.record(Kind.ALLREDUCE, Call("gradients", 3, 0, 1), 10, np.float32), "[DistributedOptimizer #1]"),
    (control.record(Kind.EXIT, Call("exit")), "rank 1 reached the end of its script"),
])
def test_disagreeing_records_are_a_fatal_mismatch_naming_each_rank(other, mentions):
    outcome = settle(gathered(grads(), other, grads()), "COMM_WORLD (3 ranks)")
    assert outcome.fatal and isinstance(outcome.error, CollectiveMismatchError)
    message = str(outcome.error)
    assert message.startswith("collective mismatch on COMM_WORLD (3 ranks): ranks [0, 2] call allreduce of 10 "
                              "float32 ('gradients', step 3, bucket 0)")
    assert "; rank 1 " in message
    assert mentions in message


def test_a_different_root_or_reduction_is_a_mismatch():
    a = control.record(Kind.BROADCAST, Call(), 4, np.float32, extra=0)
    b = control.record(Kind.BROADCAST, Call(), 4, np.float32, extra=1)
    assert settle(gathered(a, b)).fatal
    a = control.record(Kind.ALLREDUCE, Call(), 4, np.float32, control.extra_code("sum", 1.0, 1.0))
    b = control.record(Kind.ALLREDUCE, Call(), 4, np.float32, control.extra_code("average", 1.0, 1.0))
    assert settle(gathered(a, b)).fatal


def test_joined_ranks_shadow_what_they_can_and_do_not_count_as_contributors():
    outcome = settle(gathered(grads(), joined(), grads()))
    assert outcome.error is None and outcome.joined == (1,) and outcome.contributors == 2
    assert control.call_of(outcome.agreed).name == "gradients"
    metric = control.record(Kind.ALLREDUCE, Call("loss"), 1, np.float64)
    assert settle(gathered(joined(), metric)).error is None  # zeros from the joined rank
    rows = control.record(Kind.ALLGATHER_ROWS, Call(), 3, np.float32, index=4)
    assert settle(gathered(rows, joined(), rows)).rows() == [4, 0, 4]


def test_what_joined_ranks_cannot_shadow_is_refused_without_breaking_the_communicator():
    state = control.record(Kind.ALLGATHER, Call("state_dict", owner=0), 12, np.float32)
    outcome = settle(gathered(state, joined()))
    assert isinstance(outcome.error, JoinedError) and not outcome.fatal
    assert "cannot run while ranks [1] have joined" in str(outcome.error)
    for kind in (Kind.BROADCAST, Kind.BROADCAST_OBJECT, Kind.ALLGATHER_OBJECT, Kind.REDUCE_SCATTER):
        assert isinstance(settle(gathered(control.record(kind, Call()), joined())).error, JoinedError)


def test_exiting_while_another_rank_waits_in_join_is_fatal():
    outcome = settle(gathered(control.record(Kind.EXIT, Call("exit")), joined()))
    assert outcome.fatal and "rank 0 reached the end of its script (exiting); rank 1 calls join()" in str(outcome.error)


def test_all_joined():
    outcome = settle(gathered(joined(3), joined(7), joined(7)))
    assert outcome.all_joined and outcome.error is None and outcome.contributors == 0


def test_long_names_are_matched_in_full():
    a = control.record(Kind.ALLREDUCE, Call("x" * 60 + "a"), 1, np.float64)
    b = control.record(Kind.ALLREDUCE, Call("x" * 60 + "b"), 1, np.float64)
    assert settle(gathered(a, b)).fatal  # the text is cut at 40 bytes; the hash covers the whole name


def test_dtype_codes_round_trip():
    for dtype in (np.float16, np.float32, np.float64, np.int64, np.uint8, np.bool_, np.int32):
        assert control.dtype_of(control.dtype_code(dtype)) == np.dtype(dtype)
    assert control.dtype_of(control.dtype_code(None)) is None


# ---------------------------------------------------------------------------- the pipeline's gates


class FakeRequest:
    """An MPI request that completes when `done` is set."""

    def __init__(self, log, name):
        self.log, self.name, self.done = log, name, False

    def Test(self):
        return self.done

    def Wait(self):
        self.log.append(f"wait {self.name}")
        self.done = True


def test_control_messages_gate_their_data_and_do_not_wait_for_the_data_before_them():
    log, cancelled = [], set()

    def start(name):
        def go():
            if name in cancelled:
                return None
            log.append(f"start {name}")
            return FakeRequest(log, name)
        return go
    pipeline = Pipeline(in_flight=2)
    first, second = FakeRequest(log, "control 1"), FakeRequest(log, "control 2")
    gate = pipeline.control(lambda: first, lambda: (log.append("settle 1"), cancelled.add("data 1")), "op 1")
    pipeline.submit(start("data 1"), lambda: log.append("finish data 1"), after=gate)
    gate = pipeline.control(lambda: second, lambda: log.append("settle 2"), "op 2")
    pipeline.submit(start("data 2"), lambda: log.append("finish data 2"), after=gate)
    second.done = True
    pipeline.progress()
    assert log == []  # no data before its gate (the second control message waits behind the first's data)
    pipeline.drain()
    assert log == ["wait control 1", "settle 1", "settle 2", "start data 2", "wait data 2", "finish data 2"]
    assert pipeline.completed == pipeline.submitted == 2


def test_a_broken_pipeline_drops_its_queue_and_raises_on_every_later_use():
    pipeline, log = Pipeline(), []
    error = CollectiveMismatchError("they disagree")
    gate = pipeline.control(lambda: FakeRequest(log, "control"), lambda: pipeline.break_(error), "op")
    pipeline.submit(lambda: pytest.fail("a queued entry started after the break"), after=gate)
    with pytest.raises(CollectiveMismatchError, match="they disagree"):
        pipeline.drain()
    with pytest.raises(CollectiveMismatchError):
        pipeline.submit(lambda: None)
    with pytest.raises(CollectiveMismatchError):
        pipeline.control(lambda: None, None)
    assert pipeline.waiting_since is None and pipeline.waiting_on is None


def test_a_control_message_starts_while_the_data_before_it_is_in_flight():
    log = []
    pipeline = Pipeline(in_flight=1)
    first = FakeRequest(log, "control 1")
    first.done = True
    gate = pipeline.control(lambda: first, lambda: log.append("settle 1"))
    pipeline.submit(lambda: (log.append("start data 1"), FakeRequest(log, "data 1"))[1], after=gate)
    assert log == []
    pipeline.progress()
    pipeline.control(lambda: (log.append("start control 2"), FakeRequest(log, "control 2"))[1], lambda: None)
    assert log == ["settle 1", "start data 1", "start control 2"]  # not held back by data 1 in flight
