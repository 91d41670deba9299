"""The state and resume contract, tensor hyperparameters, the error contract and hooks, without torch.

One regression test per defect found by running PyTorch's test configurations: 0-d parameters keep
their state through load_state_dict; older state dicts load and step; scalar state rounds as torch's;
tensor lr/betas behave as torch's; torch's warnings and errors; the state-dict hooks. Plus the rule
protocol: coefficients by name (checked when the optimizer is built), runs decided from the computed
coefficients, and state bound by name whatever order it is declared in.
"""

import copy
import warnings

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim import lr_scheduler
from lucid.optim.elementwise import CpuBackend, ElementwiseRule, use_cpu_backend

from .conftest import CONFIGS, config_id

ELEMENTWISE = sorted({name for name, _ in CONFIGS})


def make(shapes, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(np.array(rng.standard_normal(s), dtype=dtype)) for s in shapes]


def grads(step, params, skip=()):
    rng = np.random.default_rng([5, step])
    for i, p in enumerate(params):
        p.grad = None if i in skip else np.array(rng.standard_normal(p.shape) * (rng.random(p.shape) > 0.2),
                                                 dtype=p.dtype)


def drive(opt, params, steps, start=0):
    for t in range(start, start + steps):
        grads(t, params, skip=(1,) if t % 3 == 0 else ())
        opt.step()


def resumed_equals_straight(cls, kwargs, shapes, edit=lambda sd: sd, dtype=np.float64):
    straight = make(shapes, dtype)
    drive(cls(straight, **kwargs), straight, 6)
    first = make(shapes, dtype)
    opt = cls(first, **kwargs)
    drive(opt, first, 3)
    saved = edit(copy.deepcopy(opt.state_dict()))
    second = make(shapes, dtype, seed=9)
    for a, b in zip(second, first):
        a.data[...] = b.data
    fresh = cls(second, **kwargs)
    fresh.load_state_dict(saved)
    drive(fresh, second, 3, start=3)
    for a, b in zip(straight, second):
        np.testing.assert_array_equal(a.data, b.data)
    return fresh, second


# ---------------------------------------------------------------------------- 1. 0-d parameters

@pytest.mark.parametrize("row", CONFIGS, ids=[config_id(c) for c in CONFIGS])
def test_a_zero_dim_parameter_keeps_its_state_through_load_state_dict(row):
    name, kwargs = row
    cls = getattr(optim, name)
    resumed_equals_straight(cls, kwargs, [(), (3,)])
    fresh, (alone,) = resumed_equals_straight(cls, kwargs, [()])  # alone in its buffer: used to raise KeyError
    for key, value in fresh.state[alone].items():
        if key in fresh.rule.state:
            assert value.shape == () and np.shares_memory(value, fresh.flat_buffers(0)[0].state[key])


# ---------------------------------------------------------------------------- 2. older state dicts

LATER_KEYS = ("maximize", "foreach", "fused", "differentiable", "capturable", "decoupled_weight_decay")


def as_older(sd):
    for group in sd["param_groups"]:
        for key in LATER_KEYS:
            group.pop(key, None)
    for values in sd["state"].values():
        if "step" in values:
            values["step"] = int(values["step"])  # a Python number, as torch once saved it
    return sd


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_an_older_state_dict_loads_and_steps(name):
    kwargs = dict(next(k for n, k in CONFIGS if n == name))
    fresh, _ = resumed_equals_straight(getattr(optim, name), kwargs, [(2, 2), (3,)], edit=as_older)
    for key in LATER_KEYS:
        if key in fresh.defaults:
            assert fresh.param_groups[0][key] == fresh.defaults[key]


def test_param_names_survive_a_load_as_in_torch():
    a, b = make([(2,), (3,)])
    opt = optim.SGD([("a", a), ("b", b)], lr=0.1)
    sd = opt.state_dict()
    assert sd["param_groups"][0]["param_names"] == ["a", "b"]
    unnamed = copy.deepcopy(sd)
    del unnamed["param_groups"][0]["param_names"]
    opt.load_state_dict(unnamed)
    assert opt.param_groups[0]["param_names"] == ["a", "b"]  # the live names stay
    renamed = copy.deepcopy(sd)
    renamed["param_groups"][0]["param_names"] = ["x", "y"]
    opt.load_state_dict(renamed)
    assert opt.param_groups[0]["param_names"] == ["x", "y"]  # the saved names win


# ---------------------------------------------------------------------------- 3. scalar state in torch's precision

def test_nadam_multiplies_mu_product_in_the_scalar_dtype():
    (w,) = make([(3,)])
    opt = optim.NAdam([w], lr=0.01, momentum_decay=0.004)
    expected = np.float32(1.0)
    for t in range(1, 30):
        w.grad = np.ones(3)
        opt.step()
        mu = 0.9 * (1.0 - 0.5 * 0.96 ** (t * 0.004))
        expected = np.float32(expected * np.float32(mu))  # torch: mu_product *= mu on a float32 tensor
        assert opt.state[w]["mu_product"] == float(expected), t
    assert opt.state_dict()["state"][0]["mu_product"].dtype == np.float32


def test_sparse_adam_step_stays_an_integer():
    (w,) = make([(3,)])
    opt = optim.SparseAdam([w], lr=0.01)
    for _ in range(2):
        w.grad = np.ones(3)
        opt.step()
    step = opt.state_dict()["state"][0]["step"]
    assert type(step) is int and step == 2


# ---------------------------------------------------------------------------- 4. tensor hyperparameters

def test_a_tensor_lr_steps_as_its_float32_value():
    a, b = make([(4,)]), make([(4,)])
    lr = lucid.tensor(0.1)  # float32: 0.1 rounds to 0.10000000149...
    opt_a, opt_b = optim.SGD(a, lr=lr, momentum=0.9), optim.SGD(b, lr=float(np.float32(0.1)), momentum=0.9)
    for t in range(3):
        grads(t, a)
        grads(t, b)
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(a[0].data, b[0].data)
    assert opt_a.param_groups[0]["lr"] is lr


def test_tensor_betas_correct_the_bias_in_their_dtype():
    (w,) = make([()], dtype=np.float64)
    betas = (lucid.tensor(0.9), lucid.tensor(0.999))
    opt = optim.Adam([w], lr=0.1, betas=betas)
    coefficients, _ = opt.step_coefficients(opt.param_groups[0], {"step": 2})
    b1, b2 = np.float32(0.9), np.float32(0.999)
    assert coefficients["step_size"] == np.float32(0.1 / (1 - b1 ** 3))
    assert coefficients["bias_correction2_sqrt"] == (1 - b2 ** 3) ** np.float32(0.5)
    assert coefficients["step_size"].dtype == np.float32


@pytest.mark.parametrize("make_opt, message", [
    (lambda p: optim.Adam(p, lr=lucid.tensor([0.1, 0.1])), "Tensor lr must be 1-element"),
    (lambda p: optim.SGD(p, lr=np.array([0.1, 0.2])), "Tensor lr must be 1-element"),
    (lambda p: optim.Adam(p, betas=(0.9, lucid.tensor(0.99))), "betas must be either both floats or both Tensors"),
    (lambda p: optim.AdamW(p, betas=(lucid.tensor(0.9), 0.99)), "betas must be either both floats or both Tensors"),
    (lambda p: optim.Adafactor(p, lr=lucid.tensor([0.1, 0.1])), "Tensor lr must be 1-element"),
])
def test_tensor_hyperparameters_are_checked_as_torch_checks_them(make_opt, message):
    with pytest.raises(ValueError, match=message):
        make_opt(make([(2,)]))


def test_schedulers_update_a_tensor_lr_in_place_and_copy_what_they_keep():
    lr = lucid.tensor(0.1)
    (w,) = make([(2,)])
    opt = optim.SGD([w], lr=lr)
    scheduler = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] is not lr and scheduler.base_lrs[0] is not lr
    opt.step()
    scheduler.step()
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)
    lr.mul_(10)  # the user's tensor changes; what the scheduler remembered does not
    assert float(opt.param_groups[0]["initial_lr"]) == pytest.approx(0.1)
    assert float(scheduler.base_lrs[0]) == pytest.approx(0.1)
    assert scheduler.get_last_lr()[0] is not lr


# ---------------------------------------------------------------------------- 5. torch's error contract

def test_a_parameter_repeated_in_a_group_warns():
    (w,) = make([(2,)])
    with pytest.warns(UserWarning, match="a parameter group with duplicate parameters"):
        opt = optim.Adam([w, w], lr=0.1)
    w.grad = np.ones(2)
    opt.step()  # stepped once: the flat buffer holds each parameter once
    assert opt.state[w]["step"] == 1 and opt.state_dict()["param_groups"][0]["params"] == [0, 0]


def test_groups_with_and_without_names_do_not_mix():
    a, b = make([(2,), (2,)])
    with pytest.raises(ValueError, match="cannot add param group with names to the optimizer"):
        optim.SGD([{"params": [a]}, {"params": [("b", b)]}], lr=0.1)
    with pytest.raises(ValueError, match="cannot add param group without names to the optimizer"):
        optim.SGD([{"params": [("a", a)]}, {"params": [b]}], lr=0.1)


def test_a_scheduler_warns_when_optimizer_step_was_replaced_after_it():
    (w,) = make([(2,)])
    opt = optim.SGD([w], lr=0.1)
    scheduler = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    wrapped = opt.step
    opt.step = lambda *args, **kwargs: wrapped(*args, **kwargs)
    opt.step()
    with pytest.warns(UserWarning, match="`optimizer.step\\(\\)` has been overridden after learning rate"):
        scheduler.step()
    other = optim.SGD([w], lr=0.1)
    lr_scheduler.ExponentialLR(other, gamma=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.step()  # the normal order: no warning
        lr_scheduler.ExponentialLR(other, gamma=0.9).step()


# ---------------------------------------------------------------------------- 6. state-dict hooks

def test_state_dict_hooks_run_in_order_and_may_replace_the_dict():
    (w,) = make([(2,)])
    opt = optim.SGD([w], lr=0.1)
    calls = []
    opt.register_state_dict_pre_hook(lambda o: calls.append("pre"))
    opt.register_state_dict_pre_hook(lambda o: calls.append("pre-first"), prepend=True)
    handle = opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    assert opt.state_dict()["extra"] == 1 and calls == ["pre-first", "pre"]
    handle.remove()
    assert "extra" not in opt.state_dict()


def test_load_state_dict_hooks_see_a_shallow_copy_and_may_replace_it():
    (w,) = make([(2,)])
    opt = optim.SGD([w], lr=0.1)
    sd = opt.state_dict()
    seen = []

    def pre(o, state_dict):
        seen.append(state_dict is sd)
        changed = copy.deepcopy(state_dict)
        changed["param_groups"][0]["lr"] = 0.5
        return changed
    opt.register_load_state_dict_pre_hook(pre)
    with opt.register_load_state_dict_post_hook(lambda o: seen.append(o.param_groups[0]["lr"])):
        opt.load_state_dict(sd)
    assert seen == [False, 0.5] and sd["param_groups"][0]["lr"] == 0.1
    opt.load_state_dict(sd)
    assert seen == [False, 0.5, False]  # the post hook was removed on leaving the `with`


# ---------------------------------------------------------------------------- the rule protocol

def scaled_rule(param, grad, lr, scale, *, maximize):
    if maximize:
        grad = -grad
    param = param - lr * scale * grad
    return (param,)


class Counting(ElementwiseRule):
    """A rule that records each call's range length and coefficients."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def apply(self, param, grad, state, coefficients, flags):
        self.calls.append((param.shape[0], dict(coefficients)))
        super().apply(param, grad, state, coefficients, flags)


def scaled_optimizer(coefficients):
    class Scaled(optim.Optimizer):
        rule = Counting(scaled_rule, state=())

        def __init__(self, params, lr=0.1, fused=None):
            super().__init__(params, dict(lr=lr, fused=fused, maximize=False))

        def rule_flags(self, group):
            return {"maximize": group["maximize"]}

        def step_coefficients(self, group, state):
            step = state.get("step", 0) + 1
            return coefficients(group, step), {"step": step}
    return Scaled


def test_coefficients_must_be_named_exactly_when_the_optimizer_is_built():
    with pytest.raises(TypeError, match=r"missing \['scale'\], unexpected \[\]"):
        scaled_optimizer(lambda g, step: {"lr": g["lr"]})(make([(2,)]))
    with pytest.raises(TypeError, match=r"missing \[\], unexpected \['extra'\]"):
        scaled_optimizer(lambda g, step: {"lr": g["lr"], "scale": 1.0, "extra": 2.0})(make([(2,)]))
    with pytest.raises(TypeError, match="coefficients must be a dict by name"):
        scaled_optimizer(lambda g, step: (g["lr"], 1.0))(make([(2,)]))


def test_runs_are_decided_by_the_computed_coefficients():
    cls = scaled_optimizer(lambda g, step: {"lr": g["lr"], "scale": 1.0 if step < 3 else 0.5})
    params = make([(2,), (3,), (4,)])
    opt = cls(params)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    assert [n for n, _ in cls.rule.calls] == [9]  # equal coefficients: one call over the buffer
    params[1].grad = None
    cls.rule.calls.clear()
    opt.step()
    assert [n for n, _ in cls.rule.calls] == [2, 4]  # a gap splits the range
    for p in params:
        p.grad = np.ones(p.shape)
    cls.rule.calls.clear()
    opt.step()  # steps 3, 2, 3: the middle parameter's coefficients differ
    assert [(n, c["scale"]) for n, c in cls.rule.calls] == [(2, 0.5), (3, 1.0), (4, 0.5)]
    cls.rule.calls.clear()
    cls(make([(2,), (3,)]), fused=False).step()
    assert cls.rule.calls == []  # no gradients: nothing runs


def permuted(cls):
    """`cls` with its rule's state and its `state_init` declared in reverse order."""
    class Permuted(cls):
        rule = ElementwiseRule(cls.rule.fn, state=tuple(reversed(cls.rule.state)))

        def state_init(self, group):
            return dict(reversed(list(super().state_init(group).items())))
    return Permuted


@pytest.mark.parametrize("backend", [CpuBackend.NUMBA, CpuBackend.NUMPY], ids=["numba", "numpy"])
@pytest.mark.parametrize("row", CONFIGS, ids=[config_id(c) for c in CONFIGS])
def test_permuting_the_state_order_changes_nothing(row, backend):
    name, kwargs = row
    cls = getattr(optim, name)
    previous = use_cpu_backend(backend)
    try:
        results = []
        for variant in (cls, permuted(cls)):
            params = make([(2, 3), (4,), ()])
            opt = variant(params, **kwargs)
            drive(opt, params, 5)
            results.append((params, opt.state_dict()))
    finally:
        use_cpu_backend(previous)
    (a, sd_a), (b, sd_b) = results
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.data, y.data)
    assert sd_a["state"].keys() == sd_b["state"].keys()
    for pid in sd_a["state"]:
        assert set(sd_a["state"][pid]) == set(sd_b["state"][pid])
        for key, value in sd_a["state"][pid].items():
            np.testing.assert_array_equal(value, sd_b["state"][pid][key], err_msg=f"{pid} {key}")


def test_the_documented_protocol_example_runs():
    import doctest

    import lucid.optim.elementwise as module
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 5 and failed == 0
