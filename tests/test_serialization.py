"""Tests of lucid.save / lucid.load: exact round trips, atomic writes, clear errors, no code execution."""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import lucid
from lucid import serialization
from lucid.nn import Module, Parameter


def assert_same(a, b, where="root"):
    """Recursively: same types, same dict key order and key types, same dtypes/shapes/values."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert [(type(k), k) for k in a] == [(type(k), k) for k in b], where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def roundtrip(obj, tmp_path):
    path = tmp_path / "obj.safetensors"
    lucid.save(obj, path)
    return lucid.load(path)


def optimizer_state():
    return {"state": {0: {"exp_avg": np.arange(3, dtype=np.float32),
                          "exp_avg_sq": np.ones((2, 2), dtype=np.float32),
                          "step": np.array(3.0, dtype=np.float32)},
                      1: {"momentum_buffer": None, "step": np.float32(7.0)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                              "amsgrad": False, "maximize": False, "foreach": None,
                              "params": [0, 1]}]}


def test_optimizer_state_dict_round_trips_exactly(tmp_path):
    sd = optimizer_state()
    out = roundtrip(sd, tmp_path)
    assert_same(sd, out)
    assert out["state"][0]["step"].shape == ()                  # a 0-d array stays 0-d
    assert type(out["state"][1]["step"]) is np.float32          # a NumPy scalar stays a NumPy scalar
    assert isinstance(out["param_groups"][0]["betas"], tuple)


def test_json_scalars_and_nesting(tmp_path):
    obj = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "neg0": -0.0, "big": 2 ** 70,
           "tiny": 5e-324, "true": True, "one": 1, "none": None, "s": "naïve ✓", "empty": [],
           "nested": [[1, (2, [3, {"k": ()}])]], 0: "int key", "0": "str key", -5: {}}
    out = roundtrip(obj, tmp_path)
    assert_same(obj, out)
    assert math.copysign(1.0, out["neg0"]) == -1.0
    assert out["true"] is True and type(out["one"]) is int


def test_root_may_be_a_bare_array_or_list(tmp_path):
    assert_same(roundtrip(np.arange(4), tmp_path), np.arange(4))
    assert_same(roundtrip([np.float16(1.5), "x"], tmp_path), [np.float16(1.5), "x"])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.bool_, np.int8, np.uint8,
                                   np.int16, np.int32, np.int64, np.uint64, np.complex64])
def test_dtypes(tmp_path, dtype):
    arr = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    out = roundtrip({"a": arr, "s": arr[1, 2], "z": np.zeros((0, 5), dtype)}, tmp_path)
    assert_same({"a": arr, "s": arr[1, 2], "z": np.zeros((0, 5), dtype)}, out)


def test_non_contiguous_and_big_endian_arrays(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    obj = {"t": base.T, "strided": base[::2, 1::3], "be": np.arange(5, dtype=">i4")}
    out = roundtrip(obj, tmp_path)
    np.testing.assert_array_equal(out["t"], base.T)
    np.testing.assert_array_equal(out["strided"], base[::2, 1::3])
    np.testing.assert_array_equal(out["be"], np.arange(5))
    assert out["be"].dtype == np.int32


def test_tensors_are_saved_as_their_data(tmp_path):
    t = lucid.Tensor(np.ones((2, 3), dtype=np.float64), requires_grad=True)
    out = roundtrip({"w": t}, tmp_path)
    assert type(out["w"]) is np.ndarray and out["w"].dtype == np.float64
    np.testing.assert_array_equal(out["w"], t.data)


def test_loaded_arrays_are_writable_and_shared_arrays_stay_shared(tmp_path):
    w = np.ones(3, dtype=np.float32)
    out = roundtrip({"a": w, "b": w, "c": w.copy()}, tmp_path)
    out["a"][0] = 5.0
    assert out["b"][0] == 5.0 and out["c"][0] == 1.0


class Block(Module):
    def __init__(self):
        super().__init__()
        self.weight = Parameter(np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32))
        self.bias = Parameter(np.zeros(3, dtype=np.float32))
        self.register_buffer("count", np.array(4, dtype=np.int64))


class Net(Module):
    def __init__(self):
        super().__init__()
        self.first = Block()
        self.second = Block()


def test_module_state_dict_round_trip(tmp_path):
    net = Net()
    net.second.bias.data += 1.5
    path = tmp_path / "net.safetensors"
    lucid.save(net.state_dict(), path)
    fresh = Net()
    fresh.load_state_dict(lucid.load(path))
    for (name, a), (_, b) in zip(net.state_dict().items(), fresh.state_dict().items()):
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    # a flat state dict is an ordinary safetensors file under its own key names
    assert set(load_file(str(path))) == set(net.state_dict())


def test_plain_safetensors_file_loads_as_flat_dict(tmp_path):
    path = str(tmp_path / "plain.safetensors")
    save_file({"x": np.arange(3, dtype=np.int16)}, path)
    out = lucid.load(path, device="cpu")
    assert list(out) == ["x"] and out["x"].dtype == np.int16


def test_unsupported_values_name_their_key_path(tmp_path):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(TypeError, match=r"set at \['state'\]\[0\]\['x'\]\[1\]"):
        lucid.save({"state": {0: {"x": [1, {2, 3}]}}}, path)
    with pytest.raises(TypeError, match=r"float key 1.5 in \['a'\]"):
        lucid.save({"a": {1.5: 0}}, path)
    with pytest.raises(TypeError, match=r"dtype object at \['o'\]"):
        lucid.save({"o": np.array([None, 1])}, path)
    with pytest.raises(TypeError, match=r"dtype <U2 at \['u'\]"):
        lucid.save({"u": np.str_("hi")}, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        lucid.save({"a": np.ones(2)}, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    lucid.save({"v": np.array([1.0])}, path)
    before = path.read_bytes()

    def half_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(before[: len(before) // 2])  # a partial file, then the "disk" fails
        raise OSError("No space left on device")

    monkeypatch.setattr(serialization, "save_file", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        lucid.save({"v": np.array([2.0])}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # the temp file is gone
    np.testing.assert_array_equal(lucid.load(path)["v"], [1.0])


def test_killed_writer_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    lucid.save({"v": np.array([1.0])}, path)
    script = (
        "import os, numpy as np, lucid\n"
        "from lucid import serialization\n"
        "def die(tensors, filename, metadata=None):\n"
        "    open(filename, 'wb').write(b'\\x10\\x00partial')\n"
        "    os._exit(9)\n"
        "serialization.save_file = die\n"
        f"lucid.save({{'v': np.array([2.0])}}, {str(path)!r})\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    np.testing.assert_array_equal(lucid.load(path)["v"], [1.0])


# Protocol-0 pickle of os.system("touch <marker>"): unpickling it would create the marker file.
def pickle_payload(marker):
    return b"cposix\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


def test_pickle_file_is_rejected_cleanly(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    path.write_bytes(pickle_payload(marker))
    with pytest.raises(ValueError, match=f"{path}.*not a valid safetensors file"):
        lucid.load(path)
    assert not marker.exists()


def test_pickle_looking_metadata_is_just_a_string(tmp_path):
    marker, path = tmp_path / "pwned", str(tmp_path / "evil.safetensors")
    payload = pickle_payload(marker).decode("latin-1")
    save_file({}, path, metadata={"lucid.format": "1", "lucid.structure": json.dumps(payload)})
    assert lucid.load(path) == payload
    save_file({}, path, metadata={"lucid.format": "1",
                                  "lucid.structure": json.dumps({"__reduce__": payload})})
    with pytest.raises(ValueError, match="unknown structure entry"):
        lucid.load(path)
    assert not marker.exists()


def test_loader_uses_only_safetensors_and_json():
    tree = ast.parse(Path(serialization.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert imported <= {"__future__", "json", "math", "os", "secrets", "numpy", "safetensors",
                        "safetensors.numpy"}
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr"}


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", b"\xff" * 64])
def test_corrupt_files_give_clear_errors(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}: not a valid safetensors file"):
        lucid.load(path)


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "t.safetensors"
    lucid.save({"w": np.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        lucid.load(path)


def test_damaged_structure_gives_a_clear_error(tmp_path):
    path = str(tmp_path / "s.safetensors")
    save_file({"a": np.ones(1)}, path, metadata={"lucid.format": "1",
                                                 "lucid.structure": '{"tensor": "missing"}'})
    with pytest.raises(ValueError, match="does not hold"):
        lucid.load(path)
    save_file({}, path, metadata={"lucid.format": "1", "lucid.structure": "{not json"})
    with pytest.raises(ValueError, match="not JSON"):
        lucid.load(path)
    save_file({}, path, metadata={"lucid.format": "99", "lucid.structure": "1"})
    with pytest.raises(ValueError, match="unknown version"):
        lucid.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        lucid.load(tmp_path / "nope.safetensors")


@pytest.mark.gpu
def test_load_to_gpu(tmp_path):
    if not lucid.gpu_available():
        pytest.skip("no GPU")
    from lucid import _backend
    sd = optimizer_state()
    path = tmp_path / "g.safetensors"
    lucid.save({"gpu": _backend.to_device(np.arange(3.0), "gpu"), **sd}, path)
    out = lucid.load(path, device="gpu")
    assert _backend.is_gpu_array(out["gpu"]) and _backend.is_gpu_array(out["state"][0]["exp_avg"])
    assert type(out["state"][1]["step"]) is np.float32
    np.testing.assert_array_equal(_backend.to_host(out["gpu"]), np.arange(3.0))


def _crafted_file(path, header: dict, data: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)


def _structure(text: str) -> dict:
    return {"__metadata__": {"lucid.format": "1", "lucid.structure": text}}


CRAFTED = {
    # a crafted lucid.save file; what the ValueError must say (never a TypeError, RecursionError, ...)
    "bfloat16 tensor": ({"x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4,
                        r"tensor 'x' has dtype BF16, which lucid.load does not read"),
    "float8 tensor": ({"x": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2,
                      r"tensor 'x' has dtype F8_E4M3"),
    "deep lists": (_structure("[" * 100_000 + "]" * 100_000), b"", r"nested too deeply"),
    "deep objects": (_structure('{"tuple":' * 5000 + "1" + "}" * 5000), b"", r"nested too deeply"),
    "deep but parseable": (_structure("[" * 300 + "]" * 300), b"", r"nested more than 200 levels deep"),
    "NaN constant": (_structure("NaN"), b"", r"its structure is not JSON \(NaN is not allowed"),
    "a 5000-digit integer": (_structure("1" * 5000), b"", r"its structure is not JSON"),
    "a list as the float tag": (_structure('{"float": ["x"]}'), b"", r"unknown structure entry"),
    "a list as the tensor tag": (_structure('{"tensor": ["x"]}'), b"", r"unknown structure entry"),
    "a structure that is not a string": ({"__metadata__": {"lucid.format": "1", "lucid.structure": 5}}, b"",
                                         r"not a valid safetensors file"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_files_raise_a_value_error_naming_the_file(tmp_path, case):
    header, data, message = CRAFTED[case]
    path = tmp_path / "crafted.safetensors"
    _crafted_file(path, header, data)
    with pytest.raises(ValueError, match=f"{path}: .*{message}"):
        lucid.load(path)


def test_an_object_too_deep_to_load_back_is_refused_at_save(tmp_path):
    deep = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested this deeply"):
        lucid.save(deep, tmp_path / "deep.safetensors")
    assert list(tmp_path.iterdir()) == []
    fine = []
    for _ in range(150):
        fine = [fine]
    assert_same(roundtrip(fine, tmp_path), fine)
