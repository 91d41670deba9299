"""lr schedulers: one table of configurations drives torch parity, hand-computed sequences, state dicts, errors."""

import math
import re
import warnings
from collections import namedtuple

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim import lr_scheduler as lucid_schedulers
from lucid.optim.optimizer import Optimizer

BASE = (0.1, 0.05)  # the two parameter groups' learning rates
STEPS = 10  # scheduler steps per sequence (OneCycleLR rows have total_steps == STEPS)
METRICS = [1.0, 0.9, 0.95, 0.93, 0.96, 0.5, 0.6, 0.7, 0.8, 0.9]  # ReduceLROnPlateau's monitored values

# every sequence below steps the optimizer first: any order warning is a bug
pytestmark = pytest.mark.filterwarnings("error:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")


class Decay:
    """A callable object: LambdaLR saves its attributes."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate ** epoch


class Shrink:
    """A callable-object scale_fn for CyclicLR."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, x):
        return 1.0 / (1.0 + self.rate * x)


def triangle(e, up, down):
    """CyclicLR's height: 0 -> 1 over `up` steps, back to 0 over `down` steps."""
    p = e % (up + down)
    return p / up if p <= up else (up + down - p) / down


def cos_anneal(start, end, pct):
    return end + (start - end) * (1 + math.cos(math.pi * pct)) / 2


def lin_anneal(start, end, pct):
    return start + (end - start) * pct


def sgdr(e, g, T_0=3, T_mult=2, eta_min=0.001):
    period, t = T_0, e
    while t >= period:
        t, period = t - period, period * T_mult
    return eta_min + (BASE[g] - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


def noam(e, d, w, factor=1.0):
    s = max(e, 1)
    return factor * d ** -0.5 * min(s ** -0.5, s * w ** -1.5)


def one_cycle(e, top, init, low):
    return cos_anneal(init, top, e / 2) if e <= 2 else cos_anneal(top, low, (e - 2) / 7)


def one_cycle_three(e, top, init, low):
    if e <= 2:
        return lin_anneal(init, top, e / 2)
    if e <= 4:
        return lin_anneal(top, init, (e - 2) / 2)
    return lin_anneal(init, low, (e - 4) / 5)


PLATEAU = [[0.1, 0.05]] * 3 + [[0.03, 0.015]] * 5 + [[0.02, 0.0045]] * 3  # worked out by hand from METRICS

SGD_M = ("SGD", dict(momentum=0.9))
ADAM = ("Adam", dict(betas=(0.9, 0.99)))

# (scheduler, its kwargs, (optimizer, its kwargs), the lr of group g at epoch e computed by hand, or None)
TABLE = [
    ("StepLR", dict(step_size=3, gamma=0.5), SGD_M, lambda e, g: BASE[g] * 0.5 ** (e // 3)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.5), SGD_M,
     lambda e, g: BASE[g] * 0.5 ** sum(m <= e for m in [2, 5, 5, 9])),
    ("ConstantLR", dict(factor=0.25, total_iters=4), ADAM, lambda e, g: BASE[g] * (0.25 if e < 4 else 1)),
    ("LinearLR", dict(start_factor=0.2, end_factor=0.9, total_iters=5), SGD_M,
     lambda e, g: BASE[g] * (0.2 + 0.7 * min(e, 5) / 5)),
    ("ExponentialLR", dict(gamma=0.8), SGD_M, lambda e, g: BASE[g] * 0.8 ** e),
    ("PolynomialLR", dict(total_iters=8, power=2.0), SGD_M, lambda e, g: BASE[g] * (1 - min(e, 8) / 8) ** 2),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01), SGD_M,
     lambda e, g: 0.01 + (BASE[g] - 0.01) * (1 + math.cos(math.pi * e / 4)) / 2),
    ("LambdaLR", dict(lr_lambda=lambda e: 1 / (e + 1)), SGD_M, lambda e, g: BASE[g] / (e + 1)),
    ("LambdaLR", dict(lr_lambda=[Decay(0.7), lambda e: 1 / (e + 1)]), ADAM,
     lambda e, g: BASE[g] * (0.7 ** e if g == 0 else 1 / (e + 1))),
    ("MultiplicativeLR", dict(lr_lambda=lambda e: 0.9), SGD_M, lambda e, g: BASE[g] * 0.9 ** e),
    ("NoamScheduler", dict(model_size=64, warmup_steps=4, factor=2.0), ADAM, lambda e, g: noam(e, 64, 4, 2.0)),
    ("NoamScheduler", dict(d_model=16, warmup_steps=3), SGD_M, lambda e, g: noam(e, 16, 3)),
    ("CosineAnnealingWarmRestarts", dict(T_0=3, T_mult=2, eta_min=0.001), SGD_M, sgdr),
    ("CosineAnnealingWarmRestarts", dict(T_0=4), ADAM, None),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=2, step_size_down=3), SGD_M,
     lambda e, g: 0.01 + 0.09 * triangle(e, 2, 3)),
    ("CyclicLR", dict(base_lr=[0.01, 0.001], max_lr=[0.1, 0.01], step_size_up=2, mode="triangular2",
                      base_momentum=0.85, max_momentum=0.95), ADAM,
     lambda e, g: [0.01, 0.001][g] + [0.09, 0.009][g] * triangle(e, 2, 2) / 2 ** (e // 4)),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=2, mode="exp_range", gamma=0.9,
                      cycle_momentum=False), ADAM, lambda e, g: 0.01 + 0.09 * triangle(e, 2, 2) * 0.9 ** e),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=3, scale_fn=Shrink(0.5), scale_mode="iterations"),
     SGD_M, lambda e, g: 0.01 + 0.09 * triangle(e, 3, 3) / (1 + 0.5 * e)),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=STEPS), SGD_M, lambda e, g: one_cycle(e, 0.1, 0.004, 4e-7)),
    ("OneCycleLR", dict(max_lr=[0.1, 0.05], epochs=2, steps_per_epoch=5, anneal_strategy="linear",
                        three_phase=True, div_factor=10.0, final_div_factor=100.0), ADAM,
     lambda e, g: one_cycle_three(e, [0.1, 0.05][g], [0.01, 0.005][g], [1e-4, 5e-5][g])),
    ("OneCycleLR", dict(max_lr=0.2, total_steps=STEPS, pct_start=0.5, cycle_momentum=False), ("Adagrad", {}), None),
    ("ReduceLROnPlateau", dict(factor=0.3, patience=1, threshold=0.1, cooldown=1, min_lr=[0.02, 0.0]), SGD_M,
     lambda e, g: PLATEAU[e][g]),
    ("ReduceLROnPlateau", dict(mode="max", threshold_mode="abs", threshold=0.05, patience=0, min_lr=0.04,
                               eps=1e-3), ADAM, None),
    ("SequentialLR", dict(schedulers=[("LinearLR", dict(start_factor=0.5, total_iters=2)),
                                      ("ExponentialLR", dict(gamma=0.9))], milestones=[3]), SGD_M,
     lambda e, g: BASE[g] * (0.5 + 0.5 * min(e, 2) / 2 if e < 3 else 0.9 ** (e - 3))),
    ("SequentialLR", dict(schedulers=[("ConstantLR", dict(factor=0.5, total_iters=2)),
                                      ("CosineAnnealingLR", dict(T_max=3)), ("StepLR", dict(step_size=2))],
                          milestones=[2, 5]), ADAM, None),
    ("ChainedScheduler", dict(schedulers=[("ConstantLR", dict(factor=0.5, total_iters=2)),
                                          ("ExponentialLR", dict(gamma=0.9))]), SGD_M,
     lambda e, g: BASE[g] * 0.9 ** e * (0.5 if e < 2 else 1)),
    ("ChainedScheduler", dict(schedulers=[("LinearLR", dict(start_factor=0.5, total_iters=3)),
                                          ("CosineAnnealingLR", dict(T_max=6, eta_min=0.001)),
                                          ("MultiStepLR", dict(milestones=[4, 7]))]), ADAM, None),
]
IDS = [f"{row[0]}-{i}" for i, row in enumerate(TABLE)]
NOT_IN_TORCH = ("NoamScheduler",)


def row_of(name, n=0):
    """The n-th row of the table for scheduler `name`."""
    return [row for row in TABLE if row[0] == name][n]

# ---------------------------------------------------------------------- building and running

Backend = namedtuple("Backend", "optim schedulers parameter")
LUCID = Backend(optim, lucid_schedulers, nn.Parameter)


def torch_backend():
    torch = pytest.importorskip("torch")
    return Backend(torch.optim, torch.optim.lr_scheduler, lambda data: torch.nn.Parameter(torch.tensor(data)))


def make_optimizer(backend, spec):
    """`spec`'s optimizer over two parameter groups, with learning rates BASE."""
    name, kwargs = spec
    groups = [{"params": [backend.parameter([1.0, -2.0])]}, {"params": [backend.parameter([0.5])], "lr": BASE[1]}]
    return getattr(backend.optim, name)(groups, lr=BASE[0], **kwargs)


def make_scheduler(backend, name, kwargs, optimizer, **extra):
    kwargs = dict(kwargs, **extra)
    if "schedulers" in kwargs:
        kwargs["schedulers"] = [make_scheduler(backend, n, k, optimizer) for n, k in kwargs["schedulers"]]
    return getattr(backend.schedulers, name)(optimizer=optimizer, **kwargs)


def build(backend, row):
    optimizer = make_optimizer(backend, row[2])
    return optimizer, make_scheduler(backend, row[0], row[1], optimizer)


def advance(optimizer, scheduler, i):
    optimizer.step()
    if type(scheduler).__name__ == "ReduceLROnPlateau":
        scheduler.step(METRICS[i])
    else:
        scheduler.step()


def momenta(optimizer):
    """Each group's momentum, or both betas (beta1 cycles, beta2 must stay)."""
    return [list(g["betas"]) if "betas" in g else [g.get("momentum")] for g in optimizer.param_groups]


def run(optimizer, scheduler, start=0, stop=STEPS, first=None):
    """(lrs, momenta, get_last_lr()) after construction (`first`, by default when start == 0) and each step."""
    lrs, moms, last = [], [], []

    def record():
        lrs.append([g["lr"] for g in optimizer.param_groups])
        moms.append(momenta(optimizer))
        last.append(list(scheduler.get_last_lr()))

    if start == 0 if first is None else first:
        record()
    for i in range(start, stop):
        advance(optimizer, scheduler, i)
        record()
    return lrs, moms, last


def assert_close(actual, expected, rtol=1e-12):
    np.testing.assert_allclose(np.array(actual, dtype=float), np.array(expected, dtype=float), rtol=rtol, atol=1e-16)


# ---------------------------------------------------------------------- (a) the same sequences as torch


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_sequences_equal_torch(row):
    if row[0] in NOT_IN_TORCH:
        pytest.skip(f"{row[0]} is not in torch")
    torch_lrs, torch_momenta, torch_last = run(*build(torch_backend(), row))
    lrs, moms, last = run(*build(LUCID, row))
    assert_close(lrs, torch_lrs)
    assert_close(last, torch_last)
    assert_close(moms, torch_momenta)  # the momentum (or beta1) CyclicLR and OneCycleLR cycle


RESUMABLE = [row for row in TABLE if row[0] not in ("ReduceLROnPlateau", "SequentialLR", "ChainedScheduler")
             + NOT_IN_TORCH]


@pytest.mark.parametrize("k", [1, 3, 5])  # each a milestone of StepLR, MultiStepLR or ConstantLR's next epoch
@pytest.mark.parametrize("row", RESUMABLE, ids=[IDS[TABLE.index(row)] for row in RESUMABLE])
def test_resuming_with_last_epoch_equals_torch(row, k):
    """A second scheduler built with last_epoch=k on the optimizer that the first one drove k steps."""
    def resumed(backend):
        optimizer, scheduler = build(backend, row)
        run(optimizer, scheduler, stop=k)
        scheduler = make_scheduler(backend, row[0], row[1], optimizer, last_epoch=k)
        return run(optimizer, scheduler, k, STEPS - 1, first=True)

    torch_lrs, torch_momenta, _ = resumed(torch_backend())
    lrs, moms, _ = resumed(LUCID)
    assert_close(lrs, torch_lrs)
    assert_close(moms, torch_momenta)


@pytest.mark.parametrize("name", ["CyclicLR", "OneCycleLR"])
def test_a_cyclic_scheduler_after_another_equals_torch(name):
    """CyclicLR takes its initial step from an existing "initial_lr" and cycles from base_lr afterwards."""
    def sequence(backend):
        optimizer = make_optimizer(backend, SGD_M)
        make_scheduler(backend, "StepLR", dict(step_size=2), optimizer)  # records "initial_lr"
        for group in optimizer.param_groups:
            group["lr"] = 0.3  # so the initial step's base and the cycle's base differ
        row = row_of(name)
        return run(optimizer, make_scheduler(backend, row[0], row[1], optimizer))

    torch_lrs, torch_momenta, _ = sequence(torch_backend())
    lrs, moms, _ = sequence(LUCID)
    assert_close(lrs, torch_lrs)
    assert_close(moms, torch_momenta)


@pytest.mark.filterwarnings("ignore:The epoch parameter")
@pytest.mark.parametrize("name, kwargs", [
    ("StepLR", dict(step_size=3, gamma=0.5)), ("MultiStepLR", dict(milestones=[2, 5, 5])),
    ("ConstantLR", dict(factor=0.5, total_iters=4)), ("LinearLR", dict(total_iters=6)),
    ("ExponentialLR", dict(gamma=0.9)), ("PolynomialLR", dict(total_iters=6, power=0.5)),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=0.01)), ("LambdaLR", dict(lr_lambda=Decay(0.8))),
    ("CosineAnnealingWarmRestarts", dict(T_0=2, T_mult=3, eta_min=0.01)),
    ("CosineAnnealingWarmRestarts", dict(T_0=3)),
])
def test_step_with_an_epoch_equals_torch(name, kwargs):
    """step(epoch) jumps by the closed form; CosineAnnealingWarmRestarts takes fractional epochs."""
    epochs = [0, 3, 1, 7, 7, 12, 5]
    if name == "CosineAnnealingWarmRestarts":
        epochs = [0.5, 1.25, 2.99, 3.0, 4.5, 9.1, 20.7, 1.0]

    def jumps(backend):
        optimizer = make_optimizer(backend, SGD_M)
        scheduler = make_scheduler(backend, name, kwargs, optimizer)
        out = []
        for epoch in epochs:
            optimizer.step()
            scheduler.step(epoch)
            out.append(list(scheduler.get_last_lr()))
        return out

    assert_close(jumps(LUCID), jumps(torch_backend()))


# ---------------------------------------------------------------------- (b) hand-computed sequences


HAND = [row for row in TABLE if row[3] is not None]


@pytest.mark.parametrize("row", HAND, ids=[IDS[TABLE.index(row)] for row in HAND])
def test_sequences_equal_the_formula(row):
    lrs, _, last = run(*build(LUCID, row))
    expected = [[row[3](e, g) for g in range(2)] for e in range(STEPS + 1)]
    assert_close(lrs, expected)
    assert_close(last, expected)


def test_cyclic_schedules_cycle_momentum_inversely():
    _, moms, _ = run(*build(LUCID, row_of("CyclicLR")))
    assert_close(moms, [[[0.9 - 0.1 * triangle(e, 2, 3)]] * 2 for e in range(STEPS + 1)])
    _, moms, _ = run(*build(LUCID, row_of("OneCycleLR")))
    assert_close(moms, [[[one_cycle(e, 0.85, 0.95, 0.95)]] * 2 for e in range(STEPS + 1)])
    _, moms, _ = run(*build(LUCID, row_of("OneCycleLR", 1)))  # Adam: beta1 cycles, beta2 stays
    assert moms[0] == [[0.95, 0.99]] * 2 and all(m[1] == 0.99 for step in moms for m in step)


def test_one_cycle_endpoints_and_the_error_past_total_steps():
    optimizer, scheduler = build(LUCID, row_of("OneCycleLR"))
    lrs, _, _ = run(optimizer, scheduler)
    assert lrs[0] == pytest.approx([0.1 / 25] * 2) and lrs[2] == pytest.approx([0.1] * 2)
    assert lrs[STEPS - 1] == pytest.approx([0.1 / 25 / 1e4] * 2)
    with pytest.raises(ValueError, match=f"^Tried to step {STEPS + 1} times. The specified number of total "
                                         f"steps is {STEPS}$"):
        scheduler.step()


# ---------------------------------------------------------------------- (c) state dicts


def assert_plain_data(value, where="state"):
    """No optimizer and no callables anywhere in a (nested) state dict."""
    assert not callable(value), f"{where} is callable"
    if isinstance(value, dict):
        assert "optimizer" not in value, f"{where} holds the optimizer"
        for key, item in value.items():
            assert_plain_data(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            assert_plain_data(item, f"{where}[{i}]")


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_state_dict_round_trip_through_a_file(row, tmp_path):
    k = 4
    optimizer, scheduler = build(LUCID, row)
    run(optimizer, scheduler, stop=k)
    saved = scheduler.state_dict()
    assert_plain_data(saved)
    lucid.save({"scheduler": saved, "optimizer": optimizer.state_dict()}, tmp_path / "checkpoint")
    expected = run(optimizer, scheduler, k)

    loaded = lucid.load(tmp_path / "checkpoint")
    optimizer, scheduler = build(LUCID, row)  # the scheduler first: constructing it sets the lrs
    optimizer.load_state_dict(loaded["optimizer"])
    scheduler.load_state_dict(loaded["scheduler"])
    assert run(optimizer, scheduler, k) == expected


def test_state_dict_keeps_callable_objects_attributes_only():
    optimizer = make_optimizer(LUCID, SGD_M)
    saved = lucid_schedulers.LambdaLR(optimizer, [Decay(0.5), lambda e: 1.0]).state_dict()
    assert saved["lr_lambdas"] == [{"rate": 0.5}, None]
    fresh = Decay(0.9)
    lucid_schedulers.LambdaLR(make_optimizer(LUCID, SGD_M), [fresh, lambda e: 1.0]).load_state_dict(saved)
    assert fresh.rate == 0.5
    cyclic = lucid_schedulers.CyclicLR(optimizer, 0.01, 0.1, scale_fn=Shrink(0.25))
    assert cyclic.state_dict()["_scale_fn_custom"] == {"rate": 0.25}


# ---------------------------------------------------------------------- (d) bad arguments


def other_optimizer_scheduler(backend, optimizer):
    return make_scheduler(backend, "StepLR", dict(step_size=2), make_optimizer(backend, SGD_M))


# (scheduler, kwargs, optimizer, error, torch's message)
BAD = [
    ("ConstantLR", dict(factor=1.5), SGD_M, ValueError,
     "Constant multiplicative factor expected to be between 0 and 1."),
    ("LinearLR", dict(start_factor=0), SGD_M, ValueError,
     "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."),
    ("LinearLR", dict(end_factor=1.5), SGD_M, ValueError,
     "Ending multiplicative factor expected to be between 0 and 1."),
    ("LambdaLR", dict(lr_lambda=[Decay(0.5)]), SGD_M, ValueError, "Expected 2 lr_lambdas, but got 1"),
    ("MultiplicativeLR", dict(lr_lambda=3), SGD_M, TypeError, "lr_lambda should be a function, but got int"),
    ("MultiplicativeLR", dict(lr_lambda=[3]), SGD_M, ValueError, "Expected 2 lr_lambdas, but got 1"),
    ("CosineAnnealingWarmRestarts", dict(T_0=0), SGD_M, ValueError, "Expected positive integer T_0, but got 0"),
    ("CosineAnnealingWarmRestarts", dict(T_0=2.5), SGD_M, ValueError, "Expected positive integer T_0, but got 2.5"),
    ("CosineAnnealingWarmRestarts", dict(T_0=2, T_mult=0), SGD_M, ValueError,
     "Expected integer T_mult >= 1, but got 0"),
    ("CosineAnnealingWarmRestarts", dict(T_0=2, eta_min="0"), SGD_M, ValueError,
     "Expected float or int eta_min, but got 0 of type <class 'str'>"),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, mode="cosine"), SGD_M, ValueError,
     "mode is invalid and scale_fn is None"),
    ("CyclicLR", dict(base_lr=[0.01], max_lr=0.1), SGD_M, ValueError,
     "base_lr must have the same length as optimizer.param_groups. base_lr has 1 values, param_groups has 2."),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1), ("Adagrad", {}), ValueError,
     "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=0), SGD_M, ValueError,
     "Expected positive integer total_steps, but got 0"),
    ("OneCycleLR", dict(max_lr=0.1, epochs=0, steps_per_epoch=5), SGD_M, ValueError,
     "Expected positive integer epochs, but got 0"),
    ("OneCycleLR", dict(max_lr=0.1, epochs=2, steps_per_epoch=1.5), SGD_M, ValueError,
     "Expected positive integer steps_per_epoch, but got 1.5"),
    ("OneCycleLR", dict(max_lr=0.1, epochs=2), SGD_M, ValueError,
     "You must define either total_steps OR (epochs AND steps_per_epoch)"),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=10, pct_start=1), SGD_M, ValueError,
     "Expected float between 0 and 1 pct_start, but got 1"),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=10, anneal_strategy="exp"), SGD_M, ValueError,
     "anneal_strategy must be one of 'cos' or 'linear', instead got exp"),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=10, max_momentum=[0.9]), ADAM, ValueError,
     "max_momentum must have the same length as optimizer.param_groups. max_momentum has 1 values, "
     "param_groups has 2."),
    ("ReduceLROnPlateau", dict(factor=1.0), SGD_M, ValueError, "Factor should be < 1.0."),
    ("ReduceLROnPlateau", dict(mode="avg"), SGD_M, ValueError, "mode avg is unknown!"),
    ("ReduceLROnPlateau", dict(threshold_mode="pct"), SGD_M, ValueError, "threshold mode pct is unknown!"),
    ("ReduceLROnPlateau", dict(min_lr=[0.1]), SGD_M, ValueError, "expected 2 min_lrs, got 1"),
    ("SequentialLR", dict(schedulers=[], milestones=[]), SGD_M, ValueError,
     "SequentialLR expects at least one scheduler, but got no scheduler."),
    ("SequentialLR", dict(schedulers=[("StepLR", dict(step_size=2))], milestones=[3]), SGD_M, ValueError,
     "Sequential Schedulers expects number of schedulers provided to be one more than the number of milestone "
     "points, but got number of schedulers 1 and the number of milestones to be equal to 1"),
    ("SequentialLR", dict(schedulers=[("ReduceLROnPlateau", {})], milestones=[]), SGD_M, ValueError,
     "SequentialLR does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs to be "
     "specified when calling `step`, but got one at index 0 in the given schedulers sequence."),
    ("ChainedScheduler", dict(schedulers=[]), SGD_M, ValueError,
     "ChainedScheduler expects at least one scheduler to be chained, but got no scheduler."),
    ("StepLR", dict(step_size=2, last_epoch=3), SGD_M, KeyError, "param 'initial_lr' is not specified in "
     "param_groups[0] when resuming scheduler with last_epoch >= 0."),
    ("NoamScheduler", dict(model_size=0, warmup_steps=10), SGD_M, ValueError,
     "Expected positive model_size, but got 0"),
    ("NoamScheduler", dict(model_size=8), SGD_M, TypeError, "NoamScheduler missing required argument: 'warmup_steps'"),
    ("NoamScheduler", dict(model_size=8, d_model=8, warmup_steps=2), SGD_M, TypeError,
     "NoamScheduler got both model_size and its alias d_model; pass one"),
]
BAD_IDS = [f"{row[0]}-{i}" for i, row in enumerate(BAD)]


def raised(backend, row):
    with pytest.raises(row[3]) as info:
        build(backend, row)
    return str(info.value.args[0])


@pytest.mark.parametrize("row", BAD, ids=BAD_IDS)
def test_bad_arguments_raise_torchs_errors(row):
    assert raised(LUCID, row).startswith(row[4])


@pytest.mark.parametrize("row", [r for r in BAD if r[0] not in NOT_IN_TORCH],
                         ids=[i for i, r in zip(BAD_IDS, BAD, strict=True) if r[0] not in NOT_IN_TORCH])
def test_bad_argument_messages_equal_torchs(row):
    assert raised(LUCID, row) == raised(torch_backend(), row)


def test_a_scheduler_needs_an_optimizer_of_its_own():
    with pytest.raises(TypeError, match="^object is not an Optimizer$"):
        lucid_schedulers.StepLR(object(), step_size=2)
    optimizer = make_optimizer(LUCID, SGD_M)
    stranger = lucid_schedulers.StepLR(make_optimizer(LUCID, SGD_M), step_size=2)
    for make in (lambda: lucid_schedulers.ChainedScheduler([stranger], optimizer),
                 lambda: lucid_schedulers.SequentialLR(optimizer, [stranger], [])):
        with pytest.raises(ValueError, match="expects all schedulers to belong to the same optimizer"):
            make()
    with pytest.raises(TypeError, match=re.escape("ChainedScheduler at index 0 should have `optimizer`")):
        lucid_schedulers.ChainedScheduler([object()], optimizer)


# ---------------------------------------------------------------------- warnings and wrappers


class CountingSGD(Optimizer):
    """A plain optimizer (its own step): the base class counts its steps."""

    def __init__(self, params, lr=0.1, momentum=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data -= group["lr"] * p.grad


class Wrapper:
    """An optimizer wrapper like DistributedOptimizer: `param_groups` is the wrapped list; no step count."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def step(self):
        self.optimizer.step()


@pytest.mark.filterwarnings("error")
def test_warns_when_the_scheduler_steps_before_the_optimizer():
    scheduler = lucid_schedulers.StepLR(CountingSGD([nn.Parameter([1.0])]), step_size=2)
    with pytest.warns(UserWarning, match="Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`"):
        scheduler.step()
    scheduler.step()  # only the first step is checked


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("make", [CountingSGD, lambda params: optim.SGD(params, lr=0.1)], ids=["plain", "SGD"])
def test_no_warning_in_the_right_order(make):
    optimizer = make([nn.Parameter([1.0])])
    scheduler = lucid_schedulers.ExponentialLR(optimizer, gamma=0.5)
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr() == [0.05]


def test_get_lr_outside_step_and_step_with_an_epoch_warn_like_torch():
    optimizer = CountingSGD([nn.Parameter([1.0])])
    scheduler = lucid_schedulers.StepLR(optimizer, step_size=2)
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        scheduler.get_lr()
    optimizer.step()
    with pytest.warns(UserWarning, match="The epoch parameter in `scheduler.step\\(\\)` was not necessary"):
        scheduler.step(3)


@pytest.mark.parametrize("name", ["CyclicLR", "OneCycleLR", "ChainedScheduler", "ReduceLROnPlateau", "StepLR"])
def test_schedulers_work_unchanged_on_a_wrapper(name):
    row = row_of(name)
    expected = run(*build(LUCID, row))
    wrapped = Wrapper(make_optimizer(LUCID, row[2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a wrapper without a step count gets no order warning
        assert run(wrapped, make_scheduler(LUCID, row[0], row[1], wrapped)) == expected
