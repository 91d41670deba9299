"""distributed.checkpoint from one process: world-size changes (through mpiexec jobs), extra, inspect,
consolidate, LBFGS, damaged and crafted checkpoints, and saves killed with SIGKILL half way.

The mpiexec jobs and the killed savers are this file run as a script (`python test_checkpoint.py
JOB ...`), so the model and the data are defined once. The multi-rank views of the same checks
(every rank raises, nothing hangs) are in tests/mpi/test_checkpoint_mpi.py.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import os
import pathlib
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import lucid
from lucid import nn, optim

import distributed
from distributed import checkpoint
from distributed.checkpoint import CheckpointError
from distributed.comm import SelfComm

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the shared workload (this file also runs as an mpiexec script)
from checkpoint_workload import (HIDDEN, IN, OUT, batch, edit_manifest, flat_params, flip_byte,  # noqa: E402
                                 make_model, make_optimizer, manifest_path, read_manifest, refresh_shard_checksum,
                                 rewrite_shard_header, shard,
                                 train, uninterrupted)
from script_jobs import job_env  # noqa: E402

SAVED = [f"{name}-{kind}" for name in ("adam", "sgd") for kind in ("replicated", "sharded")]


# ---------------------------------------------------------------------------------------- the workload


def wrap(opt, model, sharded: bool, comm=None):
    return distributed.DistributedOptimizer(opt, model.named_parameters(), shard_state=sharded,
                                            bucket_cap_mb=0.0002, comm=comm)


def snapshot(model, opt) -> tuple:
    """Copies of the parameters and of the optimizer state arrays, to prove that nothing changed."""
    state = {(k, name): np.array(value, copy=True)
             for k, p in enumerate(model.parameters()) for name, value in (opt.state.get(p) or {}).items()}
    return flat_params(model).copy(), state


def assert_unchanged(before: tuple, model, opt) -> None:
    params, state = snapshot(model, opt)
    np.testing.assert_array_equal(params, before[0])
    assert state.keys() == before[1].keys()
    for key, value in state.items():
        np.testing.assert_array_equal(value, before[1][key], err_msg=str(key))


# ---------------------------------------------------------------------------------------- mpiexec jobs


def job_save_and_load(directory: str) -> None:
    """(mpiexec -n 3) Save Adam and SGD, replicated and sharded, after 3 steps (then finish the
    uninterrupted run); then ranks 0 and 1, as a world of 2, load every checkpoint into a replicated
    and a sharded optimizer and take the same 3 steps."""
    from mpi4py import MPI

    from distributed.comm import MPIComm
    comm = distributed.init()
    for label in SAVED:
        name, kind = label.split("-")
        model = make_model(0)
        opt = wrap(make_optimizer(name, model), model, kind == "sharded")
        train(model, opt, range(3), comm.rank, comm.size)
        checkpoint.save(os.path.join(directory, label), model=model, optimizer=opt,
                        extra={"step": 3, "label": label, "ranks": comm.size})
        train(model, opt, range(3, 6), comm.rank, comm.size)
        if comm.rank == 0:
            np.save(os.path.join(directory, f"{label}-uninterrupted.npy"), flat_params(model))
    pair = comm.comm.Split(0 if comm.rank < 2 else MPI.UNDEFINED, comm.rank)
    if pair == MPI.COMM_NULL:
        return
    two = MPIComm(pair)
    extras = {}
    for label in SAVED + ["adam-single-process"]:
        for sharded in (False, True):
            model = make_model(1)
            opt = wrap(make_optimizer(label.split("-")[0], model), model, sharded, comm=two)
            extra = checkpoint.load(os.path.join(directory, label), model=model, optimizer=opt)
            train(model, opt, range(3, 6), two.rank, two.size)
            out = f"{label}-into-{two.size}-ranks-{'sharded' if sharded else 'replicated'}"
            extras[out] = extra
            if two.rank == 0:
                np.save(os.path.join(directory, out + ".npy"), flat_params(model))
    if two.rank == 0:
        with open(os.path.join(directory, "extras.json"), "w") as f:
            json.dump(extras, f)


def big_model():
    """About 1 M float32 parameters (12 MB with Adam's state): a save takes tens of milliseconds."""
    lucid.manual_seed(0)
    return nn.Sequential(nn.Linear(500, 1000), nn.Linear(1000, 500))


def pattern(version: int, shape, k: int) -> np.ndarray:
    """Version `version`'s values of parameter k: every element tells which version wrote it."""
    return (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) % 1000) * 1e-3 + k + version


def set_version(model, opt, version: int) -> None:
    """Parameters, Adam's state (whole or this rank's shard) and its step all say `version`."""
    inner = getattr(opt, "optimizer", opt)
    for k, p in enumerate(model.parameters()):
        p.data[...] = pattern(version, p.shape, k)
        state = inner.state[p]
        state["exp_avg"][...] = version
        state["exp_avg_sq"][...] = version + 0.5
        state["step"] = version


def job_save_forever(directory: str, log: str, first: int) -> None:
    """(mpiexec -n 2) save versions first, first + 1, ... until killed; rank 0 logs each finished one."""
    comm = distributed.init()
    pathlib.Path(f"{log}.pid{comm.rank}").write_text(str(os.getpid()))
    model = big_model()
    opt = wrap(optim.Adam(model.parameters(), lr=1e-3), model, sharded=True)
    adam_state(opt)
    version = first
    while True:
        set_version(model, opt, version)
        checkpoint.save(directory, model=model, optimizer=opt, extra={"version": version})
        if comm.rank == 0:
            with open(log, "a") as f:
                f.write(f"{version}\n")
        version += 1


def adam_state(opt) -> None:
    """Give Adam its state through load_state_dict (no step, so no kernel to compile in a fresh process)."""
    inner = getattr(opt, "optimizer", opt)
    params = [p for group in inner.param_groups for p in group["params"]]
    state = {k: {"step": np.array(0.0, np.float32), "exp_avg": np.zeros(p.shape, np.float32),
                 "exp_avg_sq": np.zeros(p.shape, np.float32)} for k, p in enumerate(params)}
    opt.load_state_dict({"state": state, "param_groups": inner.state_dict()["param_groups"]})


JOBS = {"save-and-load": job_save_and_load, "save-forever": job_save_forever}


def mpiexec_command(ranks: int, *args) -> list:
    launcher = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                            os.environ.get("PATH", "")]))
    if launcher is None:
        pytest.skip("mpiexec is not installed (pip install mpich)")
    return [launcher, "-n", str(ranks), sys.executable, __file__, *map(str, args)]


def run_job(ranks: int, *args) -> None:
    done = subprocess.run(mpiexec_command(ranks, *args), env=job_env(ranks=2), capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, f"mpiexec -n {ranks} {args}:\n{done.stdout}\n{done.stderr}"


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> pathlib.Path:
    """Checkpoints saved at 3 ranks (and one from a plain optimizer in one process), loaded at 2 ranks
    (two processes of the same mpiexec job, in a communicator of their own)."""
    root = tmp_path_factory.mktemp("checkpoints")
    model = make_model(0)
    opt = make_optimizer("adam", model)
    train(model, opt, range(3))
    checkpoint.save(root / "adam-single-process", model=model, optimizer=opt,
                    extra={"step": 3, "label": "adam-single-process", "ranks": 1})
    run_job(3, "save-and-load", root)
    return root


@pytest.fixture
def copy_of(saved, tmp_path):
    def copy(label: str) -> pathlib.Path:
        return pathlib.Path(shutil.copytree(saved / label, tmp_path / label))
    return copy


# ---------------------------------------------------------------------------------------- round trips


@pytest.mark.timeout(240)
@pytest.mark.parametrize("label", SAVED)
def test_saved_at_3_ranks_continues_like_the_uninterrupted_run_at_2_ranks_and_in_one_process(saved, label):
    name = label.split("-")[0]
    expected = uninterrupted(name)
    np.testing.assert_allclose(np.load(saved / f"{label}-uninterrupted.npy"), expected, atol=1e-5)
    extras = json.loads((saved / "extras.json").read_text())
    for kind in ("replicated", "sharded"):  # loaded by the mpiexec -n 2 job
        out = f"{label}-into-2-ranks-{kind}"
        np.testing.assert_allclose(np.load(saved / f"{out}.npy"), expected, atol=1e-5, err_msg=out)
        assert extras[out] == {"step": 3, "label": label, "ranks": 3}
    # one process, plain optimizer: what `python train.py --resume` does
    model = make_model(1)
    opt = make_optimizer(name, model)
    assert checkpoint.load(saved / label, model=model, optimizer=opt) == {"step": 3, "label": label, "ranks": 3}
    assert [g["lr"] for g in opt.param_groups] == [0.01 if name == "adam" else 0.05, 0.02]
    train(model, opt, range(3, 6))
    np.testing.assert_allclose(flat_params(model), expected, atol=1e-5)
    # one process, a DistributedOptimizer of one rank, sharded (the whole state is its shard)
    model = make_model(1)
    opt = wrap(make_optimizer(name, model), model, sharded=True, comm=SelfComm())
    checkpoint.load(saved / label, model=model, optimizer=opt)
    train(model, opt, range(3, 6))
    np.testing.assert_allclose(flat_params(model), expected, atol=1e-5)


@pytest.mark.timeout(240)
def test_a_plain_single_process_save_loads_into_a_sharded_distributed_optimizer(saved):
    expected = uninterrupted("adam")
    out = "adam-single-process-into-2-ranks-sharded"
    np.testing.assert_allclose(np.load(saved / f"{out}.npy"), expected, atol=1e-5)
    assert json.loads((saved / "extras.json").read_text())[out]["ranks"] == 1
    manifest = read_manifest(saved / "adam-single-process")
    assert manifest["world_size"] == 1 and len(manifest["files"]) == 1


def test_extra_round_trips_exactly(tmp_path):
    extra = {"epoch": 3, "step": 1200, "loss": 0.125, "best": float("inf"), "name": "run-7", "done": False,
             "none": None, "lrs": [0.1, 0.01], "shape": (2, 3), "nested": {"a": {"b": [1, "two", 3.5]}},
             1: "int key"}
    model = make_model(0)
    checkpoint.save(tmp_path / "ck", model=model, extra=extra)
    live = make_model(1)
    loaded = checkpoint.load(tmp_path / "ck", model=live)
    assert loaded == extra
    assert isinstance(loaded["shape"], tuple) and 1 in loaded
    np.testing.assert_array_equal(flat_params(live), flat_params(model))
    assert checkpoint.load(tmp_path / "ck") == extra  # nothing to load into: just the extra
    with pytest.raises(CheckpointError, match="JSON-able"):
        checkpoint.save(tmp_path / "bad", model=model, extra={"array": np.zeros(3)})
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_lbfgs_state_round_trips_whole(tmp_path):
    """LBFGS is not elementwise: its whole state (history lists, scalars) goes into rank 0's file."""
    x, y = batch(0)
    loss_fn = nn.CrossEntropyLoss()

    def run(model, opt, steps):
        def closure():
            opt.zero_grad()
            loss = loss_fn(model(lucid.Tensor(x)), lucid.Tensor(y))
            loss.backward()
            return loss
        for _ in range(steps):
            opt.step(closure)

    def lbfgs(model):
        return optim.LBFGS(model.parameters(), lr=0.5, max_iter=4, history_size=3)

    model = make_model(0)
    opt = lbfgs(model)
    run(model, opt, 3)
    checkpoint.save(tmp_path / "ck", model=model, optimizer=opt, extra={"step": 3})
    run(model, opt, 3)
    manifest = read_manifest(tmp_path / "ck")
    assert manifest["optimizer"]["class"] == "LBFGS" and manifest["optimizer"]["kind"] == "plain"
    restored = make_model(1)
    ropt = lbfgs(restored)
    assert checkpoint.load(tmp_path / "ck", model=restored, optimizer=ropt) == {"step": 3}
    run(restored, ropt, 3)
    np.testing.assert_allclose(flat_params(restored), flat_params(model), atol=1e-6)
    # consolidated, then loaded with lucid.load into a fresh optimizer: the same
    checkpoint.consolidate(tmp_path / "ck", tmp_path / "one.safetensors")
    whole = lucid.load(tmp_path / "one.safetensors")
    again = make_model(1)
    again.load_state_dict(whole["model"])
    aopt = lbfgs(again)
    aopt.load_state_dict(whole["optimizer"])
    run(again, aopt, 3)
    np.testing.assert_allclose(flat_params(again), flat_params(model), atol=1e-6)


# ---------------------------------------------------------------------------------------- inspect, consolidate


@pytest.mark.timeout(240)
def test_inspect_reports_world_size_optimizer_hyperparameters_parameters_bytes_and_checksums(saved, copy_of,
                                                                                           capsys):
    path = saved / "adam-sharded"
    info = checkpoint.inspect(path)
    assert info["world_size"] == 3 and info["optimizer"] == "Adam"
    assert [g["lr"] for g in info["param_groups"]] == [0.01, 0.02]
    assert info["param_groups"][0]["betas"] == (0.9, 0.999) and info["param_groups"][0]["eps"] == 1e-8
    assert info["model"] == [("0.weight", (HIDDEN, IN), "float32"), ("0.bias", (HIDDEN,), "float32"),
                             ("2.weight", (OUT, HIDDEN), "float32"), ("2.bias", (OUT,), "float32")]
    assert [name for name, _ in info["files"]] == [shard(path, r).name for r in range(3)]
    assert [size for _, size in info["files"]] == [shard(path, r).stat().st_size for r in range(3)]
    assert info["total_bytes"] == sum(shard(path, r).stat().st_size for r in range(3))
    assert info["checksums"] == "ok"
    assert info["extra"] == {"step": 3, "label": "adam-sharded", "ranks": 3}

    from distributed.checkpoint.__main__ import main
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    for text in ("world size 3", "optimizer    Adam", "lr=0.01", "lr=0.02", "betas=(0.9, 0.999)", "0.weight",
                 f"({HIDDEN}, {IN})", f"{info['total_bytes']:,} bytes", "checksums    ok", shard(path, 2).name):
        assert text in out, text

    damaged = copy_of("adam-sharded")
    flip_byte(shard(damaged, 1), -3)
    info = checkpoint.inspect(damaged)
    assert len(info["checksums"]) == 1 and shard(damaged, 1).name in info["checksums"][0]
    assert checkpoint.inspect(damaged, verify=False)["checksums"] is None
    assert main(["inspect", str(damaged)]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["inspect", str(damaged / "nowhere")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err

    cli = subprocess.run([sys.executable, "-m", "distributed.checkpoint", "inspect", str(path)], env=job_env(ranks=2),
                         capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 0 and "world size 3" in cli.stdout, cli.stderr


@pytest.mark.timeout(240)
def test_consolidate_writes_one_file_that_lucid_load_reads_and_a_plain_optimizer_continues_from(saved, tmp_path,
                                                                                               copy_of):
    from distributed.checkpoint.__main__ import main
    for label in ("adam-sharded", "sgd-replicated"):
        out = tmp_path / f"{label}.safetensors"
        assert main(["consolidate", str(saved / label), str(out)]) == 0
        whole = lucid.load(out)
        assert set(whole) == {"model", "optimizer", "extra"}
        assert whole["extra"] == {"step": 3, "label": label, "ranks": 3}
        assert {k: v.shape for k, v in whole["model"].items()} == {k: v.shape for k, v in
                                                                   make_model().state_dict().items()}
        assert sorted(whole["optimizer"]["state"]) == [0, 1, 2, 3]
        assert [g["params"] for g in whole["optimizer"]["param_groups"]] == [[0, 1], [2, 3]]
        name = label.split("-")[0]
        model = make_model(1)
        model.load_state_dict(whole["model"])
        opt = make_optimizer(name, model)
        opt.load_state_dict(whole["optimizer"])
        train(model, opt, range(3, 6))
        np.testing.assert_allclose(flat_params(model), uninterrupted(name), atol=1e-5)
    damaged = copy_of("adam-sharded")
    flip_byte(shard(damaged, 0), -1)
    with pytest.raises(CheckpointError, match="cannot consolidate.*shard-00000-of-00003"):
        checkpoint.consolidate(damaged, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


# ---------------------------------------------------------------------------------------- damaged checkpoints


def other_checkpoint(tmp_path, which: str) -> pathlib.Path:
    """A whole checkpoint of another model or of another optimizer (world size 1)."""
    if which == "shapes":
        model = make_model(0, hidden=HIDDEN + 1)
        opt = make_optimizer("adam", model)
    elif which == "names":
        class Renamed(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder, self.head = nn.Linear(IN, HIDDEN), nn.Linear(HIDDEN, OUT)

            def forward(self, x):
                return self.head(self.encoder(x).relu())
        model = Renamed()
        opt = make_optimizer("adam", model)
    else:
        model = make_model(0)
        opt = make_optimizer("sgd", model)
    train(model, opt, range(1))
    checkpoint.save(tmp_path / f"other-{which}", model=model, optimizer=opt)
    return tmp_path / f"other-{which}"


def replace_with(directory: pathlib.Path, other: pathlib.Path) -> None:
    shutil.rmtree(directory)
    shutil.copytree(other, directory)


DAMAGE = {
    # name: (how, what the error must say)
    "flipped data byte": (lambda d, t: flip_byte(shard(d, 1), -5), r"shard-00001-of-00003\.safetensors: SHA-256"),
    "flipped header byte": (lambda d, t: flip_byte(shard(d, 2), 12), r"shard-00002-of-00003\.safetensors"),
    "truncated shard": (lambda d, t: os.truncate(shard(d, 2), shard(d, 2).stat().st_size // 2),
                        r"shard-00002-of-00003\.safetensors: shard file has \d+ bytes.*truncated"),
    "missing shard": (lambda d, t: shard(d, 0).unlink(),
                      r"shard-00000-of-00003\.safetensors: shard file is missing"),
    "another model (shapes)": (lambda d, t: replace_with(d, other_checkpoint(t, "shapes")),
                               r"model entry '0\.weight' has shape \(11, 7\) in the checkpoint but \(10, 7\)"),
    "another model (names)": (lambda d, t: replace_with(d, other_checkpoint(t, "names")),
                              r"another model: missing \['0\.bias', '0\.weight'.*unexpected \['encoder\.bias'"),
    "another optimizer class": (lambda d, t: replace_with(d, other_checkpoint(t, "class")),
                                r"holds SGD state; the optimizer is a Adam"),
    "no pointer": (lambda d, t: (d / "LATEST").unlink(), r"LATEST: no checkpoint in .* \(no LATEST pointer"),
    "no manifest": (lambda d, t: (shard(d, 0).parent / "manifest.json").unlink(),
                    r"save-\w+/manifest\.json: file is missing"),
    "another save's manifest": (lambda d, t: shutil.copy(shard(other_checkpoint(t, "shapes"), 0).parent /
                                                         "manifest.json", shard(d, 0).parent),
                                r"manifest\.json: not the manifest .*LATEST published"),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_raises_a_clear_error_and_loads_nothing(copy_of, tmp_path, damage):
    how, message = DAMAGE[damage]
    directory = copy_of("adam-sharded")
    how(directory, tmp_path)
    model = make_model(1)
    opt = make_optimizer("adam", model)
    train(model, opt, range(1))  # live state that must survive the failed load
    before = snapshot(model, opt)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(directory, model=model, optimizer=opt)
    assert_unchanged(before, model, opt)


def test_an_optimizer_only_load_names_the_parameter_that_does_not_fit(tmp_path):
    model = make_model(0, hidden=HIDDEN + 1)
    opt = wrap(make_optimizer("adam", model), model, sharded=False, comm=SelfComm())
    checkpoint.save(tmp_path / "ck", optimizer=opt)
    live = make_model(1)
    lopt = wrap(make_optimizer("adam", live), live, sharded=True, comm=SelfComm())
    # without a model, the parameters have no names: positions, shapes and dtypes are checked
    with pytest.raises(CheckpointError, match=r"optimizer parameter 0 is \(unnamed\) of shape \(11, 7\) in the "
                                              r"checkpoint but \(unnamed\) of shape \(10, 7\)"):
        checkpoint.load(tmp_path / "ck", optimizer=lopt)
    with pytest.raises(CheckpointError, match="holds no model"):
        checkpoint.load(tmp_path / "ck", model=live)


def test_a_save_that_fails_leaves_the_previous_checkpoint_whole_and_no_temporary_file(tmp_path, monkeypatch):
    from distributed.checkpoint import _directory, _save
    model = make_model(0)
    opt = make_optimizer("sgd", model)
    train(model, opt, range(1))
    checkpoint.save(tmp_path / "ck", model=model, optimizer=opt, extra={"version": 1})
    train(model, opt, range(1, 2))
    real_write, real_write_json = _save.write_shard, _directory.write_json

    def write_then_fail(path, tensors, metadata):  # fails half way through the shard, as a full disk does
        real_write(path + ".partial", tensors, metadata)
        os.unlink(path + ".partial")
        raise OSError(28, "No space left on device (simulated)")
    before = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "ck").rglob("*"))
    monkeypatch.setattr(_save, "write_shard", write_then_fail)
    with pytest.raises(CheckpointError, match="checkpoint save failed; the previous checkpoint .* untouched.*"
                                              "No space left"):
        checkpoint.save(tmp_path / "ck", model=model, optimizer=opt, extra={"version": 2})
    monkeypatch.setattr(_directory, "write_json", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
    monkeypatch.setattr(_save, "write_shard", real_write)
    with pytest.raises(CheckpointError, match="checkpoint save failed; .*rank 0: OSError.*I/O error"):
        checkpoint.save(tmp_path / "ck", model=model, optimizer=opt, extra={"version": 3})
    monkeypatch.setattr(_directory, "write_json", real_write_json)
    monkeypatch.setattr(_directory, "publish", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(CheckpointError, match="checkpoint save failed; .*rank 0: OSError.*No space left"):
        checkpoint.save(tmp_path / "ck", model=model, optimizer=opt, extra={"version": 4})
    monkeypatch.undo()
    live = make_model(1)
    assert checkpoint.load(tmp_path / "ck", model=live) == {"version": 1}
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "ck").rglob("*")) == before  # nothing left
    with pytest.raises(CheckpointError, match="NotADirectoryError|FileExistsError"):
        (tmp_path / "file").write_text("")
        checkpoint.save(tmp_path / "file" / "ck", model=model)


# ---------------------------------------------------------------------------------------- no pickle


_CODE_RUNNING_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve",
                         "copyreg", "torch"}


def test_the_checkpoint_code_never_imports_pickle_or_runs_code_from_data():
    import distributed.checkpoint as package
    import lucid.serialization
    files = sorted(pathlib.Path(package.__file__).parent.glob("*.py")) + [pathlib.Path(lucid.serialization.__file__)]
    assert len(files) >= 6
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                assert name.split(".")[0] not in _CODE_RUNNING_MODULES, f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec", "__import__"}, f"{path.name}: {node.func.id}()"
            if isinstance(node, ast.keyword):
                assert node.arg != "allow_pickle", f"{path.name} passes allow_pickle"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in {("np", "load"), ("numpy", "load")}, path.name


class _TouchOnUnpickle:
    """A pickle payload: unpickling it creates a file (what an attacker would make run code)."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def payload(tmp_path):
    """Pickle bytes that create `marker` when unpickled, and the marker's path."""
    marker = tmp_path / "code-ran"
    data = pickle.dumps(_TouchOnUnpickle(marker))
    pickle.loads(data)  # the payload works
    assert marker.exists()
    marker.unlink()
    return data, marker


@contextlib.contextmanager
def unpickling_fails(monkeypatch):
    """Any use of pickle (or of numpy.load, which may unpickle) inside the block fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled something")
    with monkeypatch.context() as patch:
        for name in ("loads", "load", "Unpickler"):
            patch.setattr(pickle, name, refuse)
        patch.setattr(np, "load", refuse)
        yield


def test_a_crafted_checkpoint_loads_as_data_or_fails_cleanly_and_never_runs_code(tmp_path, payload, monkeypatch):
    data, marker = payload
    text = data.decode("latin-1")
    model = make_model(0)
    opt = make_optimizer("adam", model)
    train(model, opt, range(1))
    directory = tmp_path / "ck"
    # 1. pickle bytes in `extra` and in a shard's safetensors metadata: just data
    extra = {"note": text, "b64": base64.b64encode(data).decode(), "dict": {"__reduce__": text}}
    checkpoint.save(directory, model=model, optimizer=opt, extra=extra)
    rewrite_shard_header(shard(directory, 0), lambda header: header["__metadata__"].update(
        payload=text, __reduce__=base64.b64encode(data).decode()))
    live = make_model(1)
    lopt = make_optimizer("adam", live)
    with unpickling_fails(monkeypatch):
        assert checkpoint.load(directory, model=live, optimizer=lopt) == extra
        assert checkpoint.inspect(directory)["checksums"] == "ok"
    np.testing.assert_array_equal(flat_params(live), flat_params(model))
    # 2. structures that name a pickle, crafted into the manifest: a clean error, nothing changed
    b64 = base64.b64encode(data).decode()
    crafted = {
        "extra": lambda m: m.update(extra={"pickle": b64}),
        "extra object": lambda m: m.update(extra={"py/reduce": b64, "__class__": "os.system"}),
        "hyperparameters": lambda m: m["optimizer"]["param_groups"][0].update({"pickle": b64}),
        "state dtype": lambda m: m["optimizer"]["state"][0].update(dtype="object"),
    }
    for what, edit in crafted.items():
        shutil.rmtree(directory)
        checkpoint.save(directory, model=model, optimizer=opt, extra={"v": 1})
        edit_manifest(directory, edit)
        live = make_model(1)
        lopt = make_optimizer("adam", live)
        train(live, lopt, range(1))
        before = snapshot(live, lopt)
        with unpickling_fails(monkeypatch), pytest.raises(CheckpointError, match="manifest.json: field "):
            checkpoint.load(directory, model=live, optimizer=lopt)
        assert_unchanged(before, live, lopt)
        assert not marker.exists(), what
    # 3. a pickle instead of a shard or of the manifest
    shutil.rmtree(directory)
    checkpoint.save(directory, model=model, optimizer=opt, extra={"v": 1})
    shard(directory, 0).write_bytes(data)
    refresh_shard_checksum(shard(directory, 0))
    fresh = make_model(1)
    with unpickling_fails(monkeypatch):
        with pytest.raises(CheckpointError, match=r"field files\[0\]: the pieces of rank 0 need \d+ bytes"):
            checkpoint.load(directory, model=fresh)
        manifest_path(directory).write_bytes(data)
        with pytest.raises(CheckpointError, match="manifest.json: not valid JSON"):
            checkpoint.load(directory, model=fresh)
        with pytest.raises(CheckpointError):
            checkpoint.inspect(directory)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------- killed saves


def read_log(log: pathlib.Path) -> list:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def check_survivor(directory: pathlib.Path, logged: list, previous, first: int):
    """After a kill: the directory holds a whole checkpoint of a version the saver got to, or none.

    Returns the version found (None when there is none yet).
    """
    # the last version whose save returned, or the one being written (its manifest may have landed
    # before the kill); with nothing logged this round, what the previous round left
    allowed = {logged[-1], logged[-1] + 1} if logged else {previous, first}
    model = big_model()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.data[...] = -1.0
    try:
        extra = checkpoint.load(directory, model=model, optimizer=opt)
    except CheckpointError as exc:
        assert None in allowed, f"no loadable checkpoint ({exc}), but version(s) {sorted(allowed - {None})} finished"
        assert "no LATEST pointer" in str(exc) or "no such checkpoint directory" in str(exc), exc
        assert_unchanged((np.full(sum(p.data.size for p in model.parameters()), -1.0, np.float32), {}), model, opt)
        return None
    version = extra["version"]
    assert version in allowed, f"loaded version {version}; expected one of {sorted(allowed, key=str)}"
    assert checkpoint.inspect(directory)["checksums"] == "ok"  # every file the manifest names is whole
    for k, p in enumerate(model.parameters()):  # every value is the one written with that version
        np.testing.assert_array_equal(p.data, pattern(version, p.shape, k))
        state = opt.state[p]
        assert np.all(state["exp_avg"] == version) and np.all(state["exp_avg_sq"] == version + 0.5)
        assert state["step"] == version
    return version


def save_forever_in_a_child(model, opt, directory, log, first: int) -> int:
    """fork(): the child saves versions first, first + 1, ... into `directory`, logging each finished one."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child never returns into pytest
        version = first
        while True:
            set_version(model, opt, version)
            checkpoint.save(directory, model=model, optimizer=opt, extra={"version": version})
            with open(log, "a") as f:
                f.write(f"{version}\n")
            version += 1
    finally:
        os._exit(1)


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_save_killed_at_any_moment_leaves_the_previous_checkpoint_whole_single_process(tmp_path):
    from distributed.comm import use_world
    with use_world(SelfComm()):  # the forked savers must not touch MPI
        kill_savers_at_random_moments(tmp_path)


def kill_savers_at_random_moments(tmp_path):
    """Eight rounds of a child saving in a loop, killed at a random moment: a whole checkpoint (or none) survives."""
    model = big_model()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    adam_state(opt)
    directory = tmp_path / "ck"
    rng = random.Random(1)
    previous, found = None, []
    rounds = 8
    for round_ in range(rounds):
        log = tmp_path / f"log{round_}"
        first = 1000 * (round_ + 1)
        pid = save_forever_in_a_child(model, opt, directory, log, first)
        if round_ == rounds - 1:  # the last round kills after a finished save, however slow the machine
            deadline = time.monotonic() + 60
            while not read_log(log) and time.monotonic() < deadline:
                time.sleep(0.005)
        time.sleep(0.01 if round_ == 0 else rng.uniform(0.0, 0.3))  # round 0: most likely mid first save
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        previous = check_survivor(directory, read_log(log), previous, first)
        found.append(previous)
    assert found[-1] is not None, found  # a save that finished before the kill is what loads
    # the next complete save cleans up what the killed ones left behind
    set_version(model, opt, 7)
    checkpoint.save(directory, model=model, optimizer=opt, extra={"version": 7})
    (save,) = directory.glob("save-*")  # every older or interrupted save is gone
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "LATEST", save.name]
    assert sorted(p.name for p in save.iterdir()) == ["manifest.json", "shard-00000-of-00001.safetensors"]
    assert check_survivor(directory, [7], None, 8) == 7


@pytest.mark.timeout(150)
def test_a_rank_killed_in_the_middle_of_a_2_rank_save_leaves_the_previous_checkpoint_whole(tmp_path):
    directory = tmp_path / "ck"
    rng = random.Random(2)
    previous = None
    for round_ in range(3):
        log = tmp_path / f"log{round_}"
        first = 1000 * (round_ + 1)
        job = subprocess.Popen(mpiexec_command(2, "save-forever", directory, log, first), env=job_env(ranks=2),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        pids = []
        try:
            deadline = time.monotonic() + 60
            while not read_log(log):  # wait out the start-up: kill while saving
                assert job.poll() is None and time.monotonic() < deadline, "the saving job did not start"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.25))
            pids = [int((tmp_path / f"log{round_}.pid{r}").read_text()) for r in range(2)]
            os.kill(pids[rng.randrange(2)], signal.SIGKILL)
            try:
                job.wait(timeout=10)  # mpiexec ends the other rank
            except subprocess.TimeoutExpired:
                pass
        finally:
            for pid in pids:  # whatever is left of this job, by process id
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
        previous = check_survivor(directory, read_log(log), previous, first)
        assert previous is not None


if __name__ == "__main__":
    job, args = JOBS[sys.argv[1]], sys.argv[2:]
    if sys.argv[1] == "save-forever":
        job(args[0], args[1], int(args[2]))
    else:
        job(*args)
