"""The Module API: registration, traversal order, state dicts, modes, gradients, dtype moves, apply, repr."""

from collections import OrderedDict

import numpy as np
import pytest

import lucid
from lucid import nn


class Seed(nn.Module):
    """The seed example: one parameter made from a list."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter([1.0, 2.0, 3.0])

    def forward(self, x):
        return (self.w * x).sum()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.norm = nn.BatchNorm1d(4)
        self.fc2 = nn.Linear(4, 2)
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.register_buffer("steps", lucid.zeros(1))
        self.register_buffer("cache", lucid.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc2(self.norm(self.act(self.fc1(x)))) * self.scale


def test_seed_example():
    m = Seed()
    assert isinstance(m.w, nn.Parameter) and m.w.requires_grad and m.w.dtype == np.float32
    np.testing.assert_array_equal(m.w.data, [1, 2, 3])
    assert [n for n, _ in m.named_parameters()] == ["w"]
    m(lucid.tensor([1.0, 1.0, 2.0])).backward()
    np.testing.assert_array_equal(m.w.grad, [1, 1, 2])
    m.w.data -= 0.1 * m.w.grad
    np.testing.assert_allclose(m.w.data, [0.9, 1.9, 2.8])


def test_registration_and_named_parameters_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "fc2.weight", "fc2.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "steps", "cache", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["fc1", "act", "norm", "fc2"]
    assert len(list(net.modules())) == 5
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]
    shared = nn.Sequential(net.fc1, net.fc1)
    assert len(list(shared.parameters())) == 2  # shared parameters appear once


def test_state_dict_keys_and_sharing():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["scale", "steps", "fc1.weight", "fc1.bias", "norm.weight", "norm.bias",
                        "norm.running_mean", "norm.running_var", "norm.num_batches_tracked",
                        "fc2.weight", "fc2.bias"]
    assert sd["fc1.weight"] is net.fc1.weight.data  # arrays sharing memory, like torch's tensors
    assert net.state_dict(keep_vars=True)["fc1.weight"] is net.fc1.weight


def test_load_state_dict_copies_into_existing_arrays():
    source, target = Net(), Net()
    params_before = {n: (p, p.data) for n, p in target.named_parameters()}
    result = target.load_state_dict(OrderedDict((k, v.copy()) for k, v in source.state_dict().items()))
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name, p in target.named_parameters():
        assert p is params_before[name][0] and p.data is params_before[name][1]
        np.testing.assert_array_equal(p.data, dict(source.named_parameters())[name].data)


def test_load_state_dict_strict_errors_list_every_offending_key():
    net, sd = Net(), Net().state_dict()
    del sd["fc1.bias"]
    sd["extra.weight"] = np.zeros(3)
    sd["fc2.weight"] = np.zeros((5, 5))
    before = net.fc1.weight.data.copy()
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    message = str(info.value)
    assert 'Missing key(s) in state_dict: "fc1.bias"' in message
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in message
    assert "size mismatch for fc2.weight" in message and "(5, 5)" in message and "(2, 4)" in message
    np.testing.assert_array_equal(net.fc1.weight.data, before)  # nothing copied


def test_load_state_dict_non_strict_returns_the_keys():
    net, sd = Net(), Net().state_dict()
    del sd["fc1.bias"]
    sd["extra"] = np.zeros(1)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["fc1.bias"] and unexpected == ["extra"]
    np.testing.assert_array_equal(net.fc1.weight.data, sd["fc1.weight"])


def test_train_eval_propagate():
    net = Net()
    assert net.training and net.norm.training
    assert net.eval() is net and not net.norm.training and not net.training
    net.train()
    assert net.fc2.training
    with pytest.raises(ValueError, match="boolean"):
        net.train("yes")


def test_zero_grad():
    net = Net()
    net(lucid.randn(4, 3)).sum().backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=False)
    for name, p in net.named_parameters():
        assert p.grad is grads[name] and np.all(p.grad == 0)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_dtype_keeps_parameter_identity_and_integer_buffers():
    net = Net()
    params = list(net.parameters())
    assert net.to(lucid.float64) is net
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert net.norm.running_mean.dtype == np.float64
    assert net.norm.num_batches_tracked.dtype == np.int64
    assert net(lucid.randn(2, 3, dtype="float64")).dtype == np.float64
    assert net.float().fc1.weight.dtype == np.float32


def test_apply_visits_children_first():
    visited = []
    net = Net()
    assert net.apply(lambda m: visited.append(type(m).__name__)) is net
    assert visited == ["Linear", "ReLU", "BatchNorm1d", "Linear", "Net"]

    def init_linear(m):
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)
    net.apply(init_linear)
    assert np.all(net.fc1.weight.data == 0) and np.all(net.fc2.weight.data == 0)


def test_repr_like_torch():
    assert repr(Net()) == (
        "Net(\n"
        "  (fc1): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (act): ReLU()\n"
        "  (norm): BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)\n"
        "  (fc2): Linear(in_features=4, out_features=2, bias=True)\n"
        ")")
    assert repr(nn.Sequential(nn.Sequential(nn.Tanh()))) == (
        "Sequential(\n  (0): Sequential(\n    (0): Tanh()\n  )\n)")


def test_parameter_assignment_rules():
    net = Seed()
    with pytest.raises(TypeError, match="cannot assign"):
        net.w = lucid.zeros(3)
    net.w = None
    assert list(net.parameters()) == []
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        _ = net.missing
