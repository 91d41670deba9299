"""The lr schedulers on the configurations of PyTorch's test/optim/test_lrscheduler.py, against torch.

Each row builds the same schedulers on lucid and on torch over the optimizer PyTorch's tests use (SGD
with a float-lr group and a tensor-lr group, unless the row says otherwise), drives them the way that
test does (plain steps, steps with an epoch, closed forms, plateaus, cycles, SWA, resumes, state dicts)
and compares everything it records: each group's lr (and whether it is still a tensor, the same
tensor), momentum or beta1, get_last_lr(), and the values schedulers must not alias.
Skipped without torch.
"""

import copy
import math
import warnings

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.optim import lr_scheduler as lucid_lr
from lucid.optim import swa_utils as lucid_swa

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


class Lib:
    """One library's pieces, so a row is written once for both."""

    def __init__(self, optim, lr, swa, parameter, tensor, is_tensor, mul_):
        self.optim, self.lr, self.swa = optim, lr, swa
        self.parameter, self.tensor, self.is_tensor, self.mul_ = parameter, tensor, is_tensor, mul_


LUCID = Lib(lucid.optim, lucid_lr, lucid_swa, lambda shape: nn.Parameter(np.zeros(shape, dtype=np.float32)),
            lambda x: lucid.tensor(x), lambda x: isinstance(x, lucid.Tensor), lambda t, k: t.mul_(k))
TORCH = Lib(torch.optim, torch.optim.lr_scheduler, torch.optim.swa_utils,
            lambda shape: torch.nn.Parameter(torch.zeros(shape)), lambda x: torch.tensor(x),
            lambda x: isinstance(x, torch.Tensor), lambda t, k: t.mul_(k))

SHAPES = [(1, 1, 1, 1), (1,)]  # a 1x1 convolution's weight and bias, as in torch's SchedulerTestNet


def optimizer(L, kind):
    """The optimizer a row runs on."""
    conv1, conv2 = [L.parameter(s) for s in SHAPES], [L.parameter(s) for s in SHAPES]
    if kind == "setup":  # torch's setUp: a float lr group and a tensor lr group
        return L.optim.SGD([{"params": conv1}, {"params": conv2, "lr": L.tensor(0.5)}], lr=0.05)
    if kind == "adam":
        return L.optim.Adam([{"params": conv1}, {"params": conv2, "lr": 0.5}], lr=0.05)
    if kind == "single":
        return L.optim.SGD([L.parameter((2, 2))], 0.1)
    if kind == "tensor_only":
        return L.optim.SGD(conv1 + conv2, lr=L.tensor(2.0))
    if kind == "plain":
        return L.optim.SGD([L.parameter((2,)), L.parameter((1,))], lr=0.5)
    raise KeyError(kind)


def record(L, opt, use_beta1=False):
    """Per group: the lr, whether it is a tensor, whether it is still the tensor the group started with,
    and the momentum (or beta1)."""
    out = []
    originals = opt.__dict__.setdefault("_test_original_lrs", {})
    for k, group in enumerate(opt.param_groups):
        lr = group["lr"]
        same = L.is_tensor(lr) and originals.setdefault(k, lr) is lr
        momentum = group["betas"][0] if use_beta1 and "betas" in group else group.get("momentum")
        out.append((float(lr), L.is_tensor(lr), same, None if momentum is None else float(momentum)))
    return out


def last_lrs(schedulers):
    return [[float(v) for v in s.get_last_lr()] for s in schedulers]


# ---------------------------------------------------------------------- how each row is driven (torch's helpers)

def drive_test(L, opt, schedulers, epochs, row):
    """Record, then step (torch's `_test` steps only the schedulers; `_test_cycle_lr` the optimizer too)."""
    trace = []
    for _ in range(epochs):
        trace.append(record(L, opt, row.get("use_beta1", False)))
        if row.get("optimizer_steps"):
            opt.step()
        for s in schedulers:
            s.step()
    return trace


def drive_last_lr(L, opt, schedulers, epochs, row):
    trace = []
    for _ in range(epochs):
        trace.append(last_lrs(schedulers))
        opt.step()
        for s in schedulers:
            s.step()
    return trace


def drive_closed_form(L, opt, schedulers, epochs, row):
    """Step the optimizer, then the schedulers (with the epoch for `closed`, torch's `_test_with_epoch`)."""
    trace = []
    for epoch in range(epochs):
        opt.step()
        for s in schedulers:
            s.step(epoch) if row.get("closed") else s.step()
        trace.append(record(L, opt))
    return trace


def drive_constant_epoch(L, opt, schedulers, epochs, row):
    trace = []
    for _ in range(10):
        opt.step()
        for s in schedulers:
            s.step(2)
        trace.append(record(L, opt))
    return trace


def drive_plateau(L, opt, schedulers, epochs, row):
    trace = []
    for epoch in range(epochs):
        if epoch == row.get("add_group_at"):
            opt.add_param_group({"params": [L.parameter((2, 3))], "lr": 0.05})
            if row.get("extend_min_lrs"):
                schedulers[0].min_lrs.append(1e-6)
        opt.step()
        for s in schedulers:
            s.step(row["metrics"][epoch]) if isinstance(s, L.lr.ReduceLROnPlateau) else s.step()
        trace.append(record(L, opt))
    return trace


def drive_epochs(L, opt, schedulers, epochs, row):
    """CosineAnnealingWarmRestarts stepped with (fractional) epochs."""
    trace = []
    for epoch in row["epoch_list"]:
        for s in schedulers:
            s.step(epoch)
        trace.append(record(L, opt))
    return trace


def drive_swa(L, opt, schedulers, epochs, row):
    swa, before = schedulers[0], schedulers[1] if len(schedulers) > 1 else None
    trace = []
    for epoch in range(epochs):
        trace.append(record(L, opt))
        if epoch >= row["swa_start"]:
            opt.step()
            swa.step()
        elif before is not None:
            opt.step()
            before.step()
    return trace


def drive_state_dict(L, opt, schedulers, epochs, row):
    """Step, load the state into a differently built scheduler, and compare what it then holds."""
    scheduler = schedulers[0]
    for _ in range(epochs):
        opt.step()
        scheduler.step()
    copy_ = row["other"](L, opt)[0]
    copy_.load_state_dict(scheduler.state_dict())
    same = {k: (k in copy_.__dict__ and _equal(copy_.__dict__[k], v)) for k, v in scheduler.__dict__.items()
            if k not in ("optimizer", "lr_lambdas", "anneal_func", "_scale_fn_ref", "is_better")}
    return [sorted(k for k, ok in same.items() if not ok), last_lrs([copy_]), last_lrs([scheduler]), record(L, opt)]


def _equal(a, b):
    try:
        return bool(np.all(np.asarray(a, dtype=object) == np.asarray(b, dtype=object)))
    except Exception:
        return a == b


def _with(driver, **options):
    """`driver` with options added to the row's."""
    return lambda L, opt, schedulers, epochs, row: driver(L, opt, schedulers, epochs, {**row, **options})


DRIVERS = {"test": drive_test, "cycle": _with(drive_test, optimizer_steps=True), "last_lr": drive_last_lr,
           "closed_form": drive_closed_form, "with_epoch": _with(drive_closed_form, closed=True),
           "constant_epoch": drive_constant_epoch, "plateau": drive_plateau, "epochs": drive_epochs,
           "swa": drive_swa, "state_dict": drive_state_dict}


# ---------------------------------------------------------------------- the rows: test_lrscheduler.py's configurations

def s(name, **kwargs):
    """A builder of one scheduler of `name` (lr_scheduler or swa_utils) on the row's optimizer."""
    def build(L, opt):
        module = L.swa if name == "SWALR" else L.lr
        return getattr(module, name)(opt, **kwargs)
    return build


def many(*builders):
    return lambda L, opt: [b(L, opt) for b in builders]


def one(builder):
    return lambda L, opt: [builder(L, opt)]


def sequential(milestones, *builders):
    return lambda L, opt: [L.lr.SequentialLR(opt, schedulers=[b(L, opt) for b in builders], milestones=milestones)]


def chained(*builders):
    return lambda L, opt: [L.lr.ChainedScheduler([b(L, opt) for b in builders])]


def lambdas(kind, *fns):
    return lambda L, opt: [getattr(L.lr, kind)(opt, lr_lambda=list(fns))]


COS = dict(T_max=10, eta_min=1e-10)
PLATEAU_ROWS = [
    ("plateau1", dict(threshold_mode="abs", mode="min", threshold=0.01, patience=5, cooldown=5), 10,
     [10 - i * 0.0167 for i in range(20)]),
    ("plateau2", dict(patience=5, cooldown=0, threshold_mode="abs", mode="min", threshold=0.1), 22,
     [10 - i * 0.0165 for i in range(22)]),
    ("plateau3", dict(mode="max", patience=5, cooldown=5, threshold_mode="abs"), 22, [-0.8] * 2 + [-0.234] * 20),
    ("plateau4", dict(mode="max", patience=3, threshold_mode="rel", threshold=0.1), 20,
     [1.5 * (1.025 ** i) for i in range(20)]),
    ("plateau5", dict(mode="max", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5), 20,
     [1.5 * (1.005 ** i) for i in range(20)]),
    ("plateau6", dict(mode="min", threshold_mode="rel", threshold=0.1), 20, [1.5 * (0.85 ** i) for i in range(20)]),
    ("plateau7", dict(mode="min", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5), 20,
     [1] * 7 + [0.6] + [0.5] * 12),
    ("plateau8", dict(mode="max", threshold_mode="rel", min_lr=[0.4, 0.3], threshold=0.1, patience=5, cooldown=5),
     20, [1.5 * (1.005 ** i) for i in range(20)]),
]
COMPOUND_PLATEAU = [("compound_plateau1", 0, s("StepLR", gamma=0.1, step_size=3)),
                    ("compound_plateau2", 1, s("MultiStepLR", gamma=0.1, milestones=[3, 8, 12])),
                    ("compound_plateau3", 2, s("ExponentialLR", gamma=0.1)),
                    ("compound_plateau4", 3, s("CosineAnnealingLR", T_max=10, eta_min=1e-10)),
                    ("compound_plateau5", 1, s("LinearLR", start_factor=0.4, total_iters=4))]
CYCLES = {
    "triangular_one_lr": dict(base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=True, base_momentum=1,
                              max_momentum=5, mode="triangular"),
    "triangular_one_lr_no_momentum": dict(base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=False,
                                          mode="triangular"),
    "triangular2_one_lr": dict(base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=True, base_momentum=1,
                               max_momentum=5, mode="triangular2"),
    "exp_range_one_lr": dict(base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=True, base_momentum=1,
                             max_momentum=5, mode="exp_range", gamma=0.9),
    "triangular": dict(base_lr=[1, 2], max_lr=[5, 6], step_size_up=4, cycle_momentum=True, base_momentum=[1, 2],
                       max_momentum=[5, 6], mode="triangular"),
    "triangular2": dict(base_lr=[1, 3], max_lr=[5, 7], step_size_up=4, cycle_momentum=True, base_momentum=[1, 3],
                        max_momentum=[5, 7], mode="triangular2"),
    "exp_range": dict(base_lr=[1, 5], max_lr=[5, 12], step_size_up=4, cycle_momentum=True, base_momentum=[1, 5],
                      max_momentum=[5, 12], mode="exp_range", gamma=0.9),
    "triangular_up_down": dict(base_lr=1, max_lr=5, step_size_up=4, step_size_down=6, cycle_momentum=True,
                               base_momentum=1, max_momentum=5, mode="triangular"),
    "triangular2_up_down": dict(base_lr=[1, 3], max_lr=[5, 7], step_size_up=2, step_size_down=6,
                                cycle_momentum=True, base_momentum=[1, 3], max_momentum=[5, 7], mode="triangular2"),
    "exp_range_up_down": dict(base_lr=1, max_lr=5, step_size_up=2, step_size_down=6, cycle_momentum=True,
                              base_momentum=1, max_momentum=5, mode="exp_range", gamma=0.9),
}
ONE_CYCLES = {
    "onecycle_linear": dict(max_lr=25, final_div_factor=2, base_momentum=1, max_momentum=22, total_steps=10,
                            anneal_strategy="linear"),
    "onecycle_linear_three_phases": dict(max_lr=25, div_factor=25, base_momentum=1, max_momentum=22, total_steps=10,
                                         anneal_strategy="linear", pct_start=0.4, final_div_factor=4,
                                         three_phase=True),
    "onecycle_cosine": dict(max_lr=25, final_div_factor=2, base_momentum=1, max_momentum=22, total_steps=10),
}
CLOSED_FORMS = {
    "step": s("StepLR", gamma=0.1, step_size=3), "linear": s("LinearLR", start_factor=1 / 3, end_factor=0.7,
                                                              total_iters=4),
    "constant": s("ConstantLR", factor=1 / 3, total_iters=4), "multi_step": s("MultiStepLR", gamma=0.1,
                                                                              milestones=[2, 5, 9]),
    "exp": s("ExponentialLR", gamma=0.9), "poly": s("PolynomialLR", power=0.9),
    "cos": s("CosineAnnealingLR", T_max=5, eta_min=1e-10),
}
STATE_DICTS = {
    "step": (s("StepLR", gamma=0.1, step_size=3), s("StepLR", gamma=0.01 / 2, step_size=1)),
    "multi_step": (s("MultiStepLR", gamma=0.1, milestones=[2, 5, 9]), s("MultiStepLR", gamma=0.01, milestones=[1, 4, 6])),
    "exp": (s("ExponentialLR", gamma=0.1), s("ExponentialLR", gamma=0.01)),
    "cosine": (s("CosineAnnealingLR", T_max=10, eta_min=1e-10), s("CosineAnnealingLR", T_max=5, eta_min=5e-11)),
    "warm_restarts": (s("CosineAnnealingWarmRestarts", T_0=10, T_mult=2), s("CosineAnnealingWarmRestarts", T_0=100)),
    "swa": (s("SWALR", anneal_epochs=3, swa_lr=0.5), s("SWALR", anneal_epochs=10, anneal_strategy="linear", swa_lr=5.0)),
}


def rows():
    table = [
        ("step_lr", one(s("StepLR", gamma=0.1, step_size=3)), "test", 10, {}),
        ("multi_step_lr", one(s("MultiStepLR", gamma=0.1, milestones=[2, 5, 9])), "test", 10, {}),
        ("constantlr", one(s("ConstantLR", factor=1 / 2, total_iters=5)), "test", 10, {}),
        ("linearlr", one(s("LinearLR", start_factor=1 / 2, total_iters=4)), "test", 10, {}),
        ("exp_lr", one(s("ExponentialLR", gamma=0.9)), "test", 10, {}),
        ("poly_lr", one(s("PolynomialLR", power=0.9, total_iters=5)), "test", 10, {}),
        ("cos_anneal_lr", one(s("CosineAnnealingLR", **COS)), "test", 10, {}),
        ("sequentiallr1", sequential([3], s("ExponentialLR", gamma=0.8), s("StepLR", gamma=0.1, step_size=4)),
         "test", 19, {}),
        ("sequentiallr2", sequential([3], s("ConstantLR", factor=0.1, total_iters=3), s("ExponentialLR", gamma=0.9)),
         "test", 13, {}),
        ("sequentiallr3", sequential([3, 6], s("ConstantLR", factor=0.1, total_iters=3), s("ExponentialLR", gamma=0.8),
                                     s("StepLR", gamma=0.1, step_size=2)), "test", 12, {}),
        ("sequentiallr5", lambda L, o: [L.lr.SequentialLR(o, schedulers=[
            L.lr.ChainedScheduler([L.lr.LinearLR(o, start_factor=0.1, total_iters=5),
                                   L.lr.ConstantLR(o, factor=0.1, total_iters=5)]),
            L.lr.ConstantLR(o, factor=0.5, total_iters=5)], milestones=[5])], "test", 10, {}),
        ("sequentiallr_tensor_lr_not_aliased", sequential([4], s("LinearLR", start_factor=0.1, end_factor=0.8,
                                                                  total_iters=4),
                                                           s("LinearLR", start_factor=0.8, end_factor=0.1,
                                                             total_iters=4)), "test", 8, {"opt": "tensor_only"}),
        ("chained_lr1", chained(s("StepLR", gamma=0.1, step_size=3)), "test", 10, {}),
        ("chained_lr2", chained(s("LinearLR", start_factor=0.4, total_iters=3)), "test", 10, {}),
        ("chained_lr3", chained(s("LinearLR", start_factor=0.4, total_iters=3),
                                s("MultiStepLR", milestones=[4, 8, 10], gamma=0.1)), "test", 10, {}),
        ("chained_lr4", chained(s("ExponentialLR", gamma=0.9), s("ConstantLR", factor=0.2, total_iters=4),
                                s("StepLR", gamma=0.1, step_size=3)), "test", 9, {}),
        ("chained_lr5", chained(s("PolynomialLR", power=0.9, total_iters=5), s("ConstantLR", factor=0.1)),
         "test", 10, {}),
        ("compound_step_and_multistep", many(s("StepLR", gamma=0.1, step_size=3),
                                             s("MultiStepLR", gamma=0.1, milestones=[2, 5, 9])), "test", 10, {}),
        ("compound_step_and_exp", many(s("StepLR", gamma=0.1, step_size=3), s("ExponentialLR", gamma=0.9)),
         "test", 10, {}),
        ("compound_exp_and_multistep", many(s("MultiStepLR", gamma=0.1, milestones=[2, 5, 9]),
                                            s("ExponentialLR", gamma=0.9)), "test", 10, {}),
        ("compound_exp_and_linearlr", many(s("LinearLR", start_factor=0.4, end_factor=0.9, total_iters=4),
                                           s("ExponentialLR", gamma=0.9)), "test", 10, {}),
        ("compound_step_and_constantlr", many(s("StepLR", gamma=0.1, step_size=3),
                                              s("ConstantLR", factor=0.4, total_iters=4)), "test", 10, {}),
        ("compound_linearlr_and_multistep", many(s("MultiStepLR", gamma=0.1, milestones=[2, 5, 9]),
                                                 s("LinearLR", start_factor=0.4, total_iters=4)), "test", 10, {}),
        ("compound_cosanneal_and_step", many(s("CosineAnnealingLR", **COS), s("StepLR", gamma=0.1, step_size=3)),
         "test", 10, {}),
        ("compound_cosanneal_and_multistep", many(s("CosineAnnealingLR", **COS),
                                                  s("MultiStepLR", gamma=0.1, milestones=[2, 5, 9])), "test", 10, {}),
        ("compound_cosanneal_and_linearlr", many(s("LinearLR", start_factor=0.4, total_iters=4),
                                                 s("CosineAnnealingLR", **COS)), "test", 10, {}),
        ("compound_cosanneal_and_exp", many(s("CosineAnnealingLR", **COS), s("ExponentialLR", gamma=0.1)),
         "test", 10, {}),
        ("lambda_lr", lambdas("LambdaLR", lambda x: 0.9 ** x, lambda x: 0.8 ** x), "test", 10,
         {"set_lrs": [0.05, 0.4]}),
        ("multiplicative_lr", lambdas("MultiplicativeLR", lambda x: 0.9, lambda x: 0.8), "test", 10,
         {"set_lrs": [0.05, 0.4]}),
        ("multi_step_lr_with_epoch", one(s("MultiStepLR", gamma=0.1, milestones=[2, 5, 9])), "with_epoch", 10, {}),
        ("constantlr_with_epoch", one(s("ConstantLR", factor=1 / 2, total_iters=5)), "with_epoch", 10, {}),
        ("linearlr_with_epoch", one(s("LinearLR", start_factor=1 / 2, total_iters=4)), "with_epoch", 10, {}),
        ("get_last_lr_step_lr", one(s("StepLR", step_size=3, gamma=0.1)), "last_lr", 10, {"opt": "single"}),
        ("get_last_lr_multi_step_lr", one(s("MultiStepLR", gamma=0.1, milestones=[2, 5, 9])), "last_lr", 10, {}),
        ("get_last_lr_constantlr", one(s("ConstantLR", factor=1 / 2, total_iters=5)), "last_lr", 10, {}),
        ("get_last_lr_linearlr", one(s("LinearLR", start_factor=1 / 4, end_factor=3 / 5, total_iters=4)),
         "last_lr", 10, {}),
        ("get_last_lr_sequentiallr", sequential([3, 6], s("ConstantLR", factor=0.1, total_iters=3),
                                                s("ExponentialLR", gamma=0.8), s("StepLR", gamma=0.1, step_size=2)),
         "last_lr", 12, {}),
        ("cosine_then_cyclic", None, "cosine_then_cyclic", 40, {"opt": "plain"}),
    ]
    for name, build in CLOSED_FORMS.items():
        epochs = 20
        table.append((f"closed_form_{name}_chainable", one(build), "closed_form", epochs, {}))
        table.append((f"closed_form_{name}_closed", one(build), "closed_form", epochs, {"closed": True}))
    for name, build in [("step", s("StepLR", step_size=2)), ("exp", s("ExponentialLR", gamma=0.9)),
                        ("constant", s("ConstantLR")), ("linear", s("LinearLR")),
                        ("poly", s("PolynomialLR", power=0.9))]:
        table.append((f"{name}_constant_for_constant_epoch", one(build), "constant_epoch", 10, {}))
    for name, kwargs, epochs, metrics in PLATEAU_ROWS:
        table.append((name, one(s("ReduceLROnPlateau", **kwargs)), "plateau", epochs,
                      {"metrics": metrics, "set_lrs": [0.5, 0.5]}))
    for name, k, other in COMPOUND_PLATEAU:
        _, kwargs, epochs, metrics = PLATEAU_ROWS[k]
        lrs = [0.05, 0.05] if name == "compound_plateau4" else [0.5, 0.5]
        table.append((name, many(s("ReduceLROnPlateau", **kwargs), other), "plateau", epochs,
                      {"metrics": metrics, "set_lrs": lrs}))
    for min_lr in (0, [1e-5, 1e-4]):
        table.append((f"plateau_after_add_param_group_min_lr={min_lr}", one(s(
            "ReduceLROnPlateau", mode="min", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5,
            min_lr=min_lr)), "plateau", 20, {"metrics": [1] * 7 + [0.6] + [0.5] * 12, "set_lrs": [0.5, 0.5],
                                             "add_group_at": 8, "extend_min_lrs": min_lr != 0}))
    for name, kwargs in CYCLES.items():
        epochs = 22 if "triangular2" in name else (24 if name == "triangular2_up_down" else 13)
        table.append((f"cycle_lr_{name}", one(s("CyclicLR", **kwargs)), "cycle", epochs, {}))
    table.append(("cycle_lr_momentumless_adam", one(s("CyclicLR", base_lr=1, max_lr=5, step_size_up=4,
                                                      cycle_momentum=False, mode="triangular")), "cycle", 11,
                  {"opt": "adam"}))
    for name, kwargs in ONE_CYCLES.items():
        table.append((name, one(s("OneCycleLR", **kwargs)), "cycle", 10, {}))
    table.append(("onecycle_with_adam", one(s("OneCycleLR", **ONE_CYCLES["onecycle_linear"])), "cycle", 10,
                  {"opt": "adam", "use_beta1": True}))
    for T_mult in (1, 2, 4):
        table.append((f"warm_restarts_lr1_T_mult={T_mult}", one(s("CosineAnnealingWarmRestarts", T_0=10,
                                                                 T_mult=T_mult, eta_min=1e-10)), "test", 100, {}))
        table.append((f"warm_restarts_fractional_T_mult={T_mult}", one(s("CosineAnnealingWarmRestarts", T_0=10,
                                                                        T_mult=T_mult, eta_min=1e-10)), "epochs", 0,
                      {"epoch_list": [round(k / 10, 1) for k in range(300)]}))
    for T_mult, epochs in ((1, [0, 1, 2, 3, 4, 5, 12, 27, 3, 4, 5, 6, 13]),
                           (2, [0, 1, 2, 3, 4, 5, 25, 32, 33, 34, 80, 81, 3]),
                           (3, [0, 0.1, 0.2, 0.3, 1.3, 2.3, 17.5, 18.5, 19.5, 29.5, 30.5, 31.5, 50])):
        table.append((f"warm_restarts_interleaved_T_mult={T_mult}", one(s("CosineAnnealingWarmRestarts", T_0=10,
                                                                         T_mult=T_mult, eta_min=1e-10)),
                      "epochs", 0, {"epoch_list": epochs}))
    table += [
        ("swalr_no_anneal", one(s("SWALR", anneal_epochs=1, swa_lr=0.01)), "swa", 10, {"swa_start": 5}),
        ("swalr_cosine_after_multiplicative", lambda L, o: [L.swa.SWALR(o, anneal_epochs=5, swa_lr=0.01),
                                                           L.lr.MultiplicativeLR(o, lr_lambda=lambda e: 0.9)],
         "swa", 15, {"swa_start": 5}),
        ("swalr_linear_after_multiplicative", lambda L, o: [L.swa.SWALR(o, anneal_epochs=4, anneal_strategy="linear",
                                                                        swa_lr=[0.01, 0.02]),
                                                           L.lr.MultiplicativeLR(o, lr_lambda=lambda e: 0.9)],
         "swa", 15, {"swa_start": 5}),
    ]
    for name, (first, other) in STATE_DICTS.items():
        table.append((f"state_dict_{name}", one(first), "state_dict", 10, {"other": one(other)}))
    return table


ROWS = rows()


def run(L, row):
    name, build, mode, epochs, extra = row
    opt = optimizer(L, extra.get("opt", "setup"))
    for group, lr in zip(opt.param_groups, extra.get("set_lrs", [])):
        group["lr"] = lr  # as torch's tests do: this replaces the tensor lr with a float
    opt._test_original_lrs = {k: g["lr"] for k, g in enumerate(opt.param_groups)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the order warnings are tested elsewhere; here only the values
        if mode == "cosine_then_cyclic":
            return cosine_then_cyclic(L, opt)
        schedulers = build(L, opt)
        return DRIVERS[mode](L, opt, schedulers, epochs, extra)


def cosine_then_cyclic(L, opt):
    first = L.lr.CosineAnnealingLR(opt, T_max=20, eta_min=0.1)
    second = L.lr.CyclicLR(opt, base_lr=0.1, max_lr=0.3, step_size_up=1, step_size_down=3)
    trace = []
    for i in range(40):
        opt.step()
        (first if i <= first.T_max else second).step()
        trace.append(record(L, opt))
    return trace


def assert_same(ours, theirs, path="trace"):
    if isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), path
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{k}]")
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-7, abs=1e-12), path
    else:
        assert ours == theirs, path


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_scheduler_run_equals_torch(row):
    assert_same(run(LUCID, row), run(TORCH, row))


# ---------------------------------------------------------------------- initial values are copies (test_constant_initial_*)

INITIAL_LR_CLASSES = [
    ("LambdaLR", dict(lr_lambda=lambda e: e // 10)), ("MultiplicativeLR", dict(lr_lambda=lambda e: 0.95)),
    ("StepLR", dict(step_size=30)), ("MultiStepLR", dict(milestones=[30, 80])), ("ConstantLR", {}),
    ("LinearLR", {}), ("ExponentialLR", dict(gamma=0.9)), ("PolynomialLR", {}), ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingWarmRestarts", dict(T_0=20)),
]


def constant_initial(L, name, kwargs):
    lr = L.tensor(0.1)
    opt = L.optim.SGD([L.parameter((1,))], lr=lr)
    scheduler = getattr(L.lr, name)(opt, **kwargs)
    initial = float(opt.param_groups[0]["initial_lr"])
    trace = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(2):
            opt.step()
            scheduler.step(i)
            L.mul_(lr, 0.1)
            group = opt.param_groups[0]
            trace.append([float(group["initial_lr"]) == initial, [float(b) for b in scheduler.base_lrs],
                          scheduler.base_lrs[0] is not group["initial_lr"], group["lr"] is lr, float(group["lr"])])
    return trace


@pytest.mark.parametrize("name, kwargs", INITIAL_LR_CLASSES, ids=[n for n, _ in INITIAL_LR_CLASSES])
def test_initial_lr_is_a_copy_of_a_tensor_lr(name, kwargs):
    ours, theirs = constant_initial(LUCID, name, kwargs), constant_initial(TORCH, name, kwargs)
    assert_same(ours, theirs)
    assert all(step[0] and step[2] and step[3] for step in ours)


def constant_cyclic_bounds(L, kind):
    lr, max_lr = L.tensor(0.1), L.tensor(0.2)
    base_momentum, max_momentum = L.tensor(0.8 if kind == "cyclic" else 0.85), L.tensor(0.9 if kind == "cyclic" else 0.95)
    opt = L.optim.SGD([L.parameter((1,))], lr=lr)
    if kind == "cyclic":
        sch = L.lr.CyclicLR(opt, base_lr=lr, max_lr=max_lr, base_momentum=base_momentum, max_momentum=max_momentum)
    elif kind == "onecycle":
        sch = L.lr.OneCycleLR(opt, max_lr=lr, total_steps=10, base_momentum=base_momentum, max_momentum=max_momentum)
    else:
        sch = L.swa.SWALR(opt, swa_lr=max_lr)
    keys = [k for k in ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum", "swa_lr")
            if k in opt.param_groups[0]]
    before = {k: float(opt.param_groups[0][k]) for k in keys}
    trace = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(2):
            for t in (lr, max_lr, base_momentum, max_momentum):
                L.mul_(t, 0.5)
            opt.step()
            sch.step(i) if kind != "swa" else sch.step()
            group = opt.param_groups[0]
            trace.append([{k: float(group[k]) == before[k] for k in keys}, [float(b) for b in sch.base_lrs],
                          [float(m) for m in getattr(sch, "max_lrs", [])], float(group["lr"])])
    return trace


@pytest.mark.parametrize("kind", ["cyclic", "onecycle", "swa"])
def test_cyclic_and_swa_bounds_are_copies(kind):
    ours, theirs = constant_cyclic_bounds(LUCID, kind), constant_cyclic_bounds(TORCH, kind)
    assert_same(ours, theirs)
    assert all(all(step[0].values()) for step in ours)


# ---------------------------------------------------------------------- resuming (test_lr_scheduler_checkpoint)

CHECKPOINT_CLASSES = [
    ("ExponentialLR", dict(gamma=0.999)), ("LambdaLR", dict(lr_lambda=lambda e: e // 30)),
    ("MultiplicativeLR", dict(lr_lambda=lambda e: 0.95)), ("StepLR", dict(step_size=30)),
    ("MultiStepLR", dict(milestones=[30, 80])), ("ConstantLR", {}), ("LinearLR", {}), ("PolynomialLR", {}),
    ("CosineAnnealingLR", dict(T_max=10)), ("CosineAnnealingWarmRestarts", dict(T_0=20)),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1)), ("OneCycleLR", dict(max_lr=0.01, total_steps=10)),
    ("SWALR", dict(swa_lr=0.01)),
]


def resumed(L, name, kwargs):
    build = getattr(L.swa if name == "SWALR" else L.lr, name)
    params = [L.parameter((3, 3)), L.parameter((3,))]
    opt = L.optim.AdamW(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sch = build(opt, **kwargs)
        opt.step()
        sch.step()
        opt2 = L.optim.AdamW(params)
        opt2.load_state_dict(opt.state_dict())
        sch2 = build(opt2, last_epoch=0, **kwargs)
    return [float(sch2.get_last_lr()[0]), float(opt.param_groups[0]["lr"])]


@pytest.mark.parametrize("name, kwargs", CHECKPOINT_CLASSES, ids=[n for n, _ in CHECKPOINT_CLASSES])
def test_resuming_with_last_epoch_equals_torch(name, kwargs):
    assert_same(resumed(LUCID, name, kwargs), resumed(TORCH, name, kwargs))


def test_a_scheduler_built_before_step_was_replaced_warns_as_torch():
    for L in (LUCID, TORCH):
        opt = optimizer(L, "setup")
        scheduler = L.lr.StepLR(opt, gamma=0.1, step_size=3)
        original = opt.step
        opt.step = lambda *a, **k: original(*a, **k)  # replaced after the scheduler wrapped it
        opt.step()
        with pytest.warns(UserWarning, match="has been overridden after learning rate scheduler"):
            scheduler.step()
