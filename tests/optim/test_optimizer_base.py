"""The Optimizer base class: groups, defaults, zero_grad, hooks, subclassing, state dict validation."""

import numpy as np
import pytest

import lucid
from lucid import nn, optim


def params(*shapes, dtype=np.float64):
    rng = np.random.default_rng(0)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


class MyOptimizer(optim.Optimizer):
    """The seed's custom optimizer: only __init__ and step."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, dict(lr=lr))

    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.data -= group["lr"] * param.grad


def test_seed_module_and_custom_optimizer():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = nn.Parameter([1.0, 2.0, 3.0])

        def forward(self, x):
            return (self.weights * x).sum()

    model = Model()
    opt = MyOptimizer(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(lucid.Tensor([1.0, 1.0, 1.0])).backward()
        opt.step()
    np.testing.assert_allclose(model.weights.data, [0.7, 1.7, 2.7], rtol=1e-6)
    sd = opt.state_dict()
    assert sd == {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    opt.load_state_dict(sd)
    assert "MyOptimizer (" in repr(opt) and "lr: 0.1" in repr(opt)


def test_plain_optimizer_state_round_trips():
    class Momentum(optim.Optimizer):
        def __init__(self, params, lr=0.1):
            super().__init__(params, dict(lr=lr))

        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    buf = state.setdefault("buf", np.zeros_like(p.data))
                    buf *= 0.9
                    buf += p.grad
                    state["count"] = state.get("count", 0) + 1
                    p.data -= group["lr"] * buf

    a, b = params((3,)), params((3,))
    opt_a, opt_b = Momentum(a), Momentum(b)
    for p in a + b:
        p.grad = np.ones(3)
    opt_a.step()
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.state[b[0]]["count"] == 1
    assert not np.shares_memory(opt_b.state[b[0]]["buf"], opt_a.state[a[0]]["buf"])
    opt_a.step()
    opt_b.step()
    np.testing.assert_allclose(opt_b.state[b[0]]["buf"], opt_a.state[a[0]]["buf"])


def test_groups_fill_defaults_and_keep_their_own_values():
    a, b = params((2,), (3,))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5
    assert opt.param_groups[1]["momentum"] == 0.9
    assert opt.param_groups[1]["params"] == [b]


def test_named_parameters_are_accepted():
    model = nn.Module()
    model.w = nn.Parameter([1.0, 2.0])
    opt = optim.SGD(model.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["w"]
    assert opt.param_groups[0]["params"] == [model.w]


@pytest.mark.parametrize("make, error, message", [
    (lambda p: optim.SGD([], lr=0.1), ValueError, "optimizer got an empty parameter list"),
    (lambda p: optim.SGD(p[0], lr=0.1), TypeError, "should be an iterable of Tensors or dicts"),
    (lambda p: optim.SGD([{"params": p}, {"params": p[:1]}], lr=0.1), ValueError,
     "some parameters appear in more than one parameter group"),
    (lambda p: optim.SGD([np.zeros(2)], lr=0.1), TypeError, "optimizer can only optimize Tensors"),
    (lambda p: optim.SGD([p[0] * 2], lr=0.1), ValueError, "can't optimize a non-leaf Tensor"),
    (lambda p: optim.SGD({"params": p}, lr=0.1), TypeError, "optimizer can only optimize Tensors"),
    (lambda p: optim.Optimizer([{"params": p}], {"lr": optim.required}), ValueError,
     "parameter group didn't specify a value of required optimization parameter lr"),
    (lambda p: optim.SGD(set(p), lr=0.1), TypeError, "ordered collections"),
])
def test_bad_parameter_lists(make, error, message):
    with pytest.raises(error, match=message):
        make(params((2,), (3,)))


def test_add_param_group_gets_its_own_flat_buffer_and_steps():
    a, b = params((2,), (3,))
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01})
    a.grad, b.grad = np.ones(2), np.ones(3)
    opt.step()
    np.testing.assert_allclose(b.data, params((2,), (3,))[1].data - 0.01, rtol=1e-6)
    assert len(opt._flat) == 2 and opt.state[b]["step"] == 1


def test_zero_grad_to_none_keeps_the_buffer_attached():
    (a,) = params((4,))
    opt = optim.Adam([a], lr=0.1)
    ((a * a).sum()).backward()
    flat = opt._flat[0][0]
    assert np.shares_memory(a.grad, flat.grad)
    opt.zero_grad()
    assert a.grad is None
    ((a * a).sum()).backward()
    assert np.shares_memory(a.grad, flat.grad)  # backward wrote into the attached storage
    np.testing.assert_allclose(a.grad, 2 * a.data)


def test_zero_grad_to_zeros_is_one_fill():
    a, b = params((4,), (2,))
    opt = optim.SGD([a, b], lr=0.1)
    ((a * a).sum()).backward()
    opt.zero_grad(set_to_none=False)
    assert np.all(a.grad == 0) and np.all(b.grad == 0)
    assert np.shares_memory(b.grad, opt._flat[0][0].grad)


def test_user_assigned_gradient_is_honoured():
    (a,) = params((3,))
    opt = optim.SGD([a], lr=0.5)
    before = a.data.copy()
    a.grad = np.array([1.0, 2.0, 3.0])
    opt.step()
    np.testing.assert_allclose(a.data, before - 0.5 * np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("grad, message", [
    (np.ones(4), "different size"),
    (np.ones(3, dtype=np.float32), "different type"),
    ("nope", "expected to be an array"),
])
def test_wrong_gradient_is_a_clear_error(grad, message):
    (a,) = params((3,))
    with pytest.raises((ValueError, TypeError), match=message):
        a.grad = grad


def test_rebinding_data_rebuilds_the_flat_buffer_and_keeps_state():
    a, b = params((3,), (2,))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad, b.grad = np.ones(3), np.ones(2)
    opt.step()
    exp_avg = opt.state[a]["exp_avg"].copy()
    a.data = np.zeros(3)  # the user rebinds .data
    a.grad, b.grad = np.ones(3), np.ones(2)
    opt.step()
    flat = opt._flat[0][0]
    assert np.shares_memory(a.data, flat.data) and flat.is_intact()
    np.testing.assert_allclose(opt.state[a]["exp_avg"], 0.9 * exp_avg + 0.1, rtol=1e-12)
    assert np.all(a.data < 0)  # stepped from the new value, not the old one


def test_step_hooks_run_once_around_each_step():
    (a,) = params((2,))
    opt = optim.Adam([a], lr=0.1)
    calls = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    a.grad = np.ones(2)
    opt.step()
    pre.remove()
    opt.step()
    assert calls == ["pre", "post", "post"]


def test_closure_loss_is_returned():
    (a,) = params((2,))
    opt = optim.SGD([a], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a * a).sum()
        loss.backward()
        return loss

    with lucid.no_grad():
        loss = opt.step(closure)
    assert loss.requires_grad and a.grad is not None


def test_load_state_dict_validation_names_what_differs():
    a, b = params((3,), (2,))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad, b.grad = np.ones(3), np.ones(2)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.Adam([{"params": [a]}, {"params": [b]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.Adam([a]).load_state_dict(sd)
    c, d = params((4,), (2,))
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(3,\).*\(4,\)"):
        optim.Adam([c, d]).load_state_dict(sd)
    missing = {"state": {0: {"exp_avg": np.zeros(3), "step": 1}}, "param_groups": sd["param_groups"]}
    target = optim.Adam([a, b])
    with pytest.raises(ValueError, match="missing state \\['exp_avg_sq'\\] for parameter 0"):
        target.load_state_dict(missing)
    assert target.param_groups[0]["lr"] == 1e-3  # nothing changed by a refused load


def test_load_state_dict_keeps_live_parameters_and_group_objects():
    a, b = params((3,), (2,))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    group = opt.param_groups[0]
    a.grad, b.grad = np.ones(3), np.ones(2)
    opt.step()
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.5
    opt.load_state_dict(sd)
    assert opt.param_groups[0] is group and group["params"] == [a, b] and group["lr"] == 0.5
    assert np.shares_memory(opt.state[a]["momentum_buffer"], opt._flat[0][0].state["momentum_buffer"])


def test_repr_is_short():
    a, = params((1000,))
    text = repr(optim.Adam([a], lr=0.1))
    assert text.startswith("Adam (\nParameter Group 0\n") and "lr: 0.1" in text and len(text) < 400


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: optim.Adam(p, eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda p: optim.Adam(p, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: optim.NAdam(p, momentum_decay=-1), "Invalid momentum_decay value: -1"),
    (lambda p: optim.RMSprop(p, alpha=-1), "Invalid alpha value: -1"),
    (lambda p: optim.Adagrad(p, lr_decay=-1), "Invalid lr_decay value: -1"),
    (lambda p: optim.Adagrad(p, initial_accumulator_value=-1), "Invalid initial_accumulator_value value: -1"),
    (lambda p: optim.Adadelta(p, rho=1.5), "Invalid rho value: 1.5"),
    (lambda p: optim.Rprop(p, etas=(1.5, 1.2)), "Invalid eta values: 1.5, 1.2"),
    (lambda p: optim.SparseAdam(p, lr=0), "Invalid learning rate: 0"),
    (lambda p: optim.ASGD(p, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: optim.Adamax(p, lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda p: optim.RAdam(p, eps=-1), "Invalid epsilon value: -1"),
])
def test_invalid_hyperparameters_raise_torchs_errors(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make(params((2,)))


def test_mixed_dtypes_get_one_flat_buffer_each():
    a = nn.Parameter(np.ones(3, dtype=np.float32))
    b = nn.Parameter(np.ones(2, dtype=np.float64))
    opt = optim.Adam([a, b], lr=0.1)
    assert sorted(f.dtype.name for f in opt._flat[0]) == ["float32", "float64"]
    a.grad, b.grad = np.ones(3, np.float32), np.ones(2)
    opt.step()
    assert a.data.dtype == np.float32 and np.allclose(a.data, 0.9) and np.allclose(b.data, 0.9)


def test_float16_runs_the_numpy_path():
    a = nn.Parameter(np.ones(5, dtype=np.float16))
    opt = optim.SGD([a], lr=0.5, momentum=0.9)
    a.grad = np.ones(5, dtype=np.float16)
    opt.step()
    assert a.data.dtype == np.float16 and np.allclose(a.data, 0.5)
