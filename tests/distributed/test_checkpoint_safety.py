"""distributed.checkpoint against an attacker and a bad disk, in one process: confined reads, consolidate
never writing into its input, exact partitions, the manifest's checksum (a byte-flip fuzz), a load that
changes nothing unless everything loads, dtypes checked three ways, unrelated files left alone, and
the CLI's single `error:` line and exit status 2.

Crafted manifests are written as an attacker would: with their checksums (and LATEST's) recomputed, so
what is tested is the check of the content, not only the checksum. The multi-rank views (ranks that
disagree at save, every rank raising) are in tests/mpi/test_checkpoint_agreement_mpi.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import lucid
from lucid import nn

import distributed
from distributed import checkpoint
from distributed import comm as comm_module
from distributed.checkpoint import CheckpointError
from distributed.checkpoint.__main__ import main
from distributed.comm import SelfComm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the shared workload
from checkpoint_workload import (HIDDEN, IN, edit_manifest, flat_params, make_model, make_optimizer,  # noqa: E402
                                 manifest_path, published, read_manifest, refresh_shard_checksum,
                                 rewrite_shard_header, shard, train)
from script_jobs import job_env  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    """These tests are single-process whatever launched pytest: the default communicator is this process."""
    monkeypatch.setattr(comm_module, "_world", SelfComm())


def trained(seed: int, name: str = "adam", sharded: bool = False):
    model = make_model(seed)
    opt = make_optimizer(name, model)
    if sharded:
        opt = distributed.DistributedOptimizer(opt, model.named_parameters(), shard_state=True, comm=SelfComm())
    train(model, opt, range(seed % 2 + 1))
    return model, opt


@pytest.fixture
def saved(tmp_path):
    """A checkpoint of a trained model and Adam (one process), and the model and optimizer saved."""
    model, opt = trained(0)
    directory = tmp_path / "ck"
    checkpoint.save(directory, model=model, optimizer=opt, extra={"epoch": 3})
    return directory, model, opt


def snapshot(model, opt) -> tuple:
    """Copies of the parameters, the optimizer's state dict and its hyperparameters."""
    inner = getattr(opt, "optimizer", opt)
    return flat_params(model).copy(), copy.deepcopy(opt.state_dict()), copy.deepcopy(inner.param_groups)


def assert_same(a: tuple, b: tuple) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1]["state"].keys() == b[1]["state"].keys()
    for k, entry in a[1]["state"].items():
        assert entry.keys() == b[1]["state"][k].keys(), k
        for name, value in entry.items():
            np.testing.assert_array_equal(value, b[1]["state"][k][name], err_msg=f"{k}/{name}")
    assert [{k: v for k, v in g.items() if k != "params"} for g in a[2]] == \
        [{k: v for k, v in g.items() if k != "params"} for g in b[2]]


def fails_and_changes_nothing(directory, match: str, name: str = "adam", sharded: bool = False) -> None:
    """Loading `directory` raises CheckpointError matching `match`; the live model and optimizer are as before."""
    model, opt = trained(1, name, sharded)
    before = snapshot(model, opt)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load(directory, model=model, optimizer=opt)
    assert_same(snapshot(model, opt), before)


def tree(directory: pathlib.Path) -> dict:
    """Every entry under `directory` (not following links) with its content's hash or link target."""
    out = {}
    for path in sorted(directory.rglob("*")):
        rel = str(path.relative_to(directory))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


# ---------------------------------------------------------------------------------------- confinement


def _outside_copy(path: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    outside = tmp_path / "outside" / path.name
    outside.parent.mkdir(exist_ok=True)
    (shutil.copytree if path.is_dir() else shutil.copy)(path, outside)
    return outside


def _name_shard(d, name: str):
    """Put a copy of shard 0 at `name` (relative to the save directory) and make the manifest name it."""
    target = published(d) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shard(d, 0), target)
    edit_manifest(d, lambda m: m["files"][0].update(file=name))


def _fifo_instead(path: pathlib.Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _symlink_instead(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    outside = _outside_copy(path, tmp_path)
    (shutil.rmtree if path.is_dir() and not path.is_symlink() else os.unlink)(path)
    os.symlink(outside, path)


ESCAPES = {
    # how the checkpoint is made to reach outside its directory; what the error must say
    "../ name": (lambda d, t: _name_shard(d, "../x.safetensors"), r"field files\[0\]\.file: '\.\./x"),
    "absolute name": (lambda d, t: edit_manifest(d, lambda m: m["files"][0].update(file="/etc/passwd")),
                      r"field files\[0\]\.file: '/etc/passwd'"),
    "name with a directory part": (lambda d, t: _name_shard(d, "sub/shard-00000-of-00001.safetensors"),
                                   r"field files\[0\]\.file: 'sub/"),
    "symlinked shard": (lambda d, t: _symlink_instead(shard(d, 0), t), r"shard-00000-of-00001\.safetensors: is a "
                                                                       r"symbolic link; refused"),
    "symlinked save directory": (lambda d, t: _symlink_instead(published(d), t),
                                 r"save-\w+: is a symbolic link; refused"),
    "symlinked manifest": (lambda d, t: _symlink_instead(manifest_path(d), t), r"manifest\.json: is a symbolic link"),
    "symlinked LATEST": (lambda d, t: _symlink_instead(d / "LATEST", t), r"LATEST: is a symbolic link"),
    "LATEST naming ../": (lambda d, t: (d / "LATEST").write_text(
        (d / "LATEST").read_text().replace('"save-', '"../ck/save-')), r"LATEST: field save"),
    "FIFO instead of a shard": (lambda d, t: _fifo_instead(shard(d, 0)),
                                r"shard-00000-of-00001\.safetensors: not a regular file"),
}
def _load_into_live(directory, _):
    model, opt = trained(1)
    before = snapshot(model, opt)
    try:
        checkpoint.load(directory, model=model, optimizer=opt)
    finally:
        assert_same(snapshot(model, opt), before)


def _inspect(directory, _):
    """inspect raises, or (a problem of one shard file) reports it for that file and never says "ok"."""
    checks = checkpoint.inspect(directory)["checksums"]
    assert checks != "ok"
    raise CheckpointError("; ".join(checks))


OPERATIONS = {
    "load": _load_into_live,
    "inspect": _inspect,
    "consolidate": lambda d, t: checkpoint.consolidate(d, t / "one.safetensors"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("escape", list(ESCAPES))
def test_nothing_outside_the_checkpoint_directory_is_ever_read(saved, tmp_path, escape, operation):
    directory = saved[0]
    how, message = ESCAPES[escape]
    how(directory, tmp_path)
    with pytest.raises(CheckpointError, match=message):
        OPERATIONS[operation](directory, tmp_path)
    assert not (tmp_path / "one.safetensors").exists()


# ---------------------------------------------------------------------------------------- consolidate's output


def _inside_outputs(directory: pathlib.Path, tmp_path: pathlib.Path) -> dict:
    link = tmp_path / "link.safetensors"
    link.symlink_to(shard(directory, 0))
    return {"its manifest": manifest_path(directory), "its shard": shard(directory, 0),
            "LATEST": directory / "LATEST", "a new file inside": directory / "one.safetensors",
            "a symlink into it": link}


def test_consolidate_never_writes_into_its_own_checkpoint_and_writes_its_output_atomically(saved, tmp_path,
                                                                                          monkeypatch, capsys):
    directory = saved[0]
    before = tree(directory)
    for what, out in _inside_outputs(directory, tmp_path).items():
        with pytest.raises(CheckpointError, match="inside the checkpoint directory .* refused"):
            checkpoint.consolidate(directory, out)
        assert main(["consolidate", str(directory), str(out)]) == 2, what
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
        assert tree(directory) == before, what
    with pytest.raises(CheckpointError, match="is a directory"):
        checkpoint.consolidate(directory, tmp_path)
    with pytest.raises(CheckpointError, match="no such directory"):
        checkpoint.consolidate(directory, tmp_path / "missing" / "one.safetensors")
    with pytest.raises(CheckpointError, match="cannot write the consolidated checkpoint"):
        checkpoint.consolidate(directory, "/proc/lucid-consolidated.safetensors")  # not writable, even by root
    # an existing output is replaced whole or not at all
    out = tmp_path / "one.safetensors"
    checkpoint.consolidate(directory, out)
    good = out.read_bytes()
    from lucid import serialization

    def half_then_fail(tensors, metadata, tmp):
        pathlib.Path(tmp).write_bytes(good[:100])
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(serialization, "_write_file", half_then_fail)
    with pytest.raises(CheckpointError, match="No space left"):
        checkpoint.consolidate(directory, out)
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert tree(directory) == before
    assert lucid.load(out)["extra"] == {"epoch": 3}


# ---------------------------------------------------------------------------------------- partitions


PIECES = {
    # the pieces of model entry 0.weight (70 elements, saved by 1 rank), crafted; the error
    "overlapping halves on one rank": ([[0, 0, 35], [0, 0, 35]], r"piece starts at 0; expected 35"),
    "overlap": ([[0, 0, 40], [0, 30, 70]], r"piece starts at 30; expected 40"),
    "gap": ([[0, 0, 35]], r"pieces cover \[0, 35\) of 70 elements"),
    "not from 0": ([[0, 10, 70]], r"piece starts at 10; expected 0"),
    "past the end": ([[0, 0, 80]], r"piece \[0, 80\) is empty or outside \[0, 70\)"),
    "empty piece": ([[0, 0, 0], [0, 0, 70]], r"piece \[0, 0\) is empty"),
    "rank that did not save": ([[1, 0, 70]], r"rank 1 does not exist"),
    "same rank twice": ([[0, 0, 35], [0, 35, 70]], r"rank 0 holds two pieces"),
    "string number": ([["0", 0, 70]], r"expected an integer, found a string"),
    "float": ([[0, 0, 70.0]], r"expected an integer, found a number"),
    "boolean": ([[True, 0, 70]], r"expected an integer, found a boolean"),
    "negative": ([[0, -1, 70]], r"-1 is out of range"),
    "not a triple": ([[0, 70]], r"expected 3 items"),
}


@pytest.mark.parametrize("case", list(PIECES))
def test_pieces_must_partition_every_tensor_exactly(saved, case):
    directory = saved[0]
    pieces, message = PIECES[case]
    assert read_manifest(directory)["model"]["entries"][0]["pieces"] == [[0, 0, HIDDEN * IN]]
    edit_manifest(directory, lambda m: m["model"]["entries"][0].update(pieces=pieces))
    fails_and_changes_nothing(directory, r"manifest\.json: field model\.entries\[0\]\.pieces.*" + message)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.consolidate(directory, directory.parent / "one.safetensors")


# ---------------------------------------------------------------------------------------- the manifest's checksum


def _loads_exactly_the_saved(directory, model, opt) -> None:
    live, lopt = trained(1)
    assert checkpoint.load(directory, model=live, optimizer=lopt) == {"epoch": 3}
    assert_same(snapshot(live, lopt), snapshot(model, opt))


@pytest.mark.timeout(120)
def test_any_damage_to_the_manifest_or_the_pointer_raises_or_loads_exactly_what_was_saved(saved):
    """A byte-flip fuzz: every third byte of the manifest and every byte of LATEST, one random bit each."""
    directory, model, opt = saved
    rng = random.Random(10)
    live, lopt = trained(1)
    before = snapshot(live, lopt)
    outcomes = {"raised": 0, "loaded": 0}
    for path, stride in ((manifest_path(directory), 3), (directory / "LATEST", 1)):
        original = path.read_bytes()
        for offset in range(rng.randrange(stride), len(original), stride):
            damaged = bytearray(original)
            damaged[offset] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(damaged))
            try:
                checkpoint.load(directory, model=live, optimizer=lopt)
            except CheckpointError:
                outcomes["raised"] += 1
                continue
            outcomes["loaded"] += 1  # only a change that keeps the content (1e-08 -> 1E-08) may load
            assert_same(snapshot(live, lopt), snapshot(model, opt))
            live, lopt = trained(1)
        path.write_bytes(original)
        assert_same(snapshot(live, lopt), before)
    tried = sum(outcomes.values())
    assert tried > 700 and outcomes["raised"] >= 0.9 * tried, outcomes
    # and one digit changed, keeping valid JSON: refused by the checksum (today it moved values silently)
    text = manifest_path(directory).read_text()
    assert '["lr",0.02]' in text
    manifest_path(directory).write_text(text.replace('["lr",0.02]', '["lr",0.03]', 1))
    fails_and_changes_nothing(directory, r"manifest\.json: its content does not match its manifest_sha256")


# ---------------------------------------------------------------------------------------- two-phase load


def _group_pair(manifest: dict, group: int, key: str) -> list:
    """The [key, value] pair of a hyperparameter in the manifest's encoded parameter groups."""
    return next(pair for pair in manifest["optimizer"]["param_groups"][group]["dict"] if pair[0] == key)


def _set_step(value):
    return lambda m: m["optimizer"]["scalars"]["3"].update(step=value)


CRAFTED = {
    # an edit of the manifest (checksums recomputed); the error it must raise
    "step null": (_set_step(None), r"field optimizer\.scalars\.3\.step: expected a number, found null"),
    "step [3]": (_set_step([3]), r"field optimizer\.scalars\.3\.step: expected a number, found a list"),
    "step '3'": (_set_step("3"), r"expected a number, found a string"),
    "step true": (_set_step(True), r"expected a number, found a boolean"),
    "unknown dtype": (lambda m: m["optimizer"]["state"][-1].update(dtype="bfloat16"),
                      r"field optimizer\.state\[\d+\]\.dtype: 'bfloat16' is not one of"),
    "lr as a string": (lambda m: _group_pair(m, 1, "lr").__setitem__(1, "0.02"),
                       r"hyperparameter 'lr' is '0\.02' in the checkpoint"),
    "betas of 3": (lambda m: _group_pair(m, 0, "betas").__setitem__(1, {"tuple": [0.9, 0.99, 0.5]}),
                   r"hyperparameter 'betas'"),
    "lr missing": (lambda m: m["optimizer"]["param_groups"][0]["dict"].remove(_group_pair(m, 0, "lr")),
                   r"parameter group 0 lacks the hyperparameter 'lr'"),
    "a state array dropped": (lambda m: m["optimizer"]["state"].pop(),
                              r"parameters \d and 3 of group 1 have different state"),
    "step dropped": (lambda m: m["optimizer"]["scalars"]["0"].pop("step"), r"parameter 0 lacks scalar state"),
    "scalar for no parameter": (lambda m: m["optimizer"]["scalars"].update({"9": {"step": 1}}),
                                r"'9' is not a parameter index"),
    "state of another parameter": (lambda m: m["optimizer"]["state"][0].update(param=7),
                                   r"field optimizer\.state\[0\]\.param: 7 is out of range"),
    "unknown key": (lambda m: m["model"]["entries"][0].update(note="x"), r"unexpected key 'note'"),
    "missing key": (lambda m: m["optimizer"].pop("group_sizes"), r"field optimizer: missing key 'group_sizes'"),
    "string world size": (lambda m: m.update(world_size="1"), r"field world_size: expected an integer"),
    "absurd shape": (lambda m: m["model"]["entries"][0].update(shape=[10 ** 12, 10 ** 12]),
                     r"field model\.entries\[0\]\.shape: shape .* has more than"),
    "huge shape": (lambda m: m["model"]["entries"][0].update(shape=[10 ** 12]),
                   r"pieces cover \[0, 70\) of 1000000000000 elements"),
    "deep extra": (lambda m: m.update(extra=json.loads("[" * 300 + "]" * 300)), r"nested more than 200 levels"),
    "extra naming a tensor": (lambda m: m.update(extra={"tensor": "model/0.weight"}),
                              r"field extra: not a valid structure: the structure refers to a tensor"),
    "foreign version": (lambda m: m.update(version=1), r"field version: format version 1"),
}


@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded"])
@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_manifest_raises_naming_file_and_field_and_changes_nothing(saved, case, sharded):
    directory = saved[0]
    edit, message = CRAFTED[case]
    edit_manifest(directory, edit)
    fails_and_changes_nothing(directory, r"manifest\.json: .*" + message, sharded=sharded)


# ---------------------------------------------------------------------------------------- dtypes and metadata


def test_dtypes_must_agree_between_shard_manifest_and_live_tensor(saved, tmp_path):
    directory = saved[0]
    original = tmp_path / "original"
    shutil.copytree(directory, original)
    # the shard says float16 (or int8, bool) where the manifest says float32
    for code in ("F16", "I8", "BOOL"):
        rewrite_shard_header(shard(directory, 0), lambda h, c=code: h["model/0.weight"].update(dtype=c))
        fails_and_changes_nothing(directory, rf"shard-00000-of-00001\.safetensors: 'model/0\.weight' is stored as "
                                             rf"{code}; the manifest says float32")
        shutil.rmtree(directory)
        shutil.copytree(original, directory)
    # the manifest lies about the model's dtype
    edit_manifest(directory, lambda m: m["model"]["entries"][0].update(dtype="float16"))
    fails_and_changes_nothing(directory, r"model entry '0\.weight' is float16 in the checkpoint but float32")
    # shard and manifest agree on float64, the live model is float32: refused, not cast
    model64 = make_model(0)
    for p in model64.parameters():
        p.data = p.data.astype(np.float64)
    checkpoint.save(tmp_path / "f64", model=model64)
    fails_and_changes_nothing(tmp_path / "f64", r"model entry '0\.weight' is float64 in the checkpoint but float32")


def test_a_shard_of_another_save_or_rank_is_refused(saved, tmp_path):
    directory, model, opt = saved
    other = tmp_path / "other"
    checkpoint.save(other, model=model, optimizer=opt, extra={"epoch": 3})  # same content, another save id
    shutil.copy(shard(other, 0), shard(directory, 0))
    refresh_shard_checksum(shard(directory, 0))
    fails_and_changes_nothing(directory, r"shard-00000-of-00001\.safetensors: header metadata .* does not match "
                                         r"the manifest's .*a shard of another save or rank")
    shutil.rmtree(directory)
    checkpoint.save(directory, model=model, optimizer=opt, extra={"epoch": 3})
    rewrite_shard_header(shard(directory, 0), lambda h: h["__metadata__"].update(rank="1"))
    fails_and_changes_nothing(directory, r"header metadata \{.*'rank': '1'")
    shutil.rmtree(directory)
    checkpoint.save(directory, model=model, optimizer=opt, extra={"epoch": 3})
    rewrite_shard_header(shard(directory, 0), lambda h: h.update({"model/extra": h["model/0.bias"]}))
    fails_and_changes_nothing(directory, r"holds tensors \['model/extra'\] the manifest does not put here")
    shutil.rmtree(directory)
    checkpoint.save(directory, model=model, optimizer=opt, extra={"epoch": 3})
    rewrite_shard_header(shard(directory, 0), lambda h: h["model/0.bias"].update(data_offsets=[0, 44]))
    fails_and_changes_nothing(directory, r"'model/0\.bias' has data offsets \[0, 44\] that do not fit")


# ---------------------------------------------------------------------------------------- unrelated files


def test_a_save_never_touches_files_it_did_not_write(tmp_path):
    directory = tmp_path / "ck"
    directory.mkdir()
    unrelated = {"shard-best.safetensors": b"best", ".x.tmp": b"someone's", "notes.txt": b"notes",
                 "manifest.json": b'{"format": "lucid.distributed.checkpoint", "version": 1}',  # a format-1 save
                 "shard-00000-of-00001.abcdef012345.safetensors": b"format 1 shard",
                 ".model.safetensors.123.abcd1234.tmp": b"a concurrent lucid.save", ".LATEST.tmp": b"not ours",
                 "save-best/model.safetensors": b"a user's directory", "save-0123456789ab/mine.txt": b"user file"}
    for name, data in unrelated.items():
        (directory / name).parent.mkdir(exist_ok=True)
        (directory / name).write_bytes(data)
    lucid.save({"w": np.ones(3)}, directory / "model.safetensors")
    before = tree(directory)
    model, opt = trained(0)
    for epoch in range(3):
        checkpoint.save(directory, model=model, optimizer=opt, extra={"epoch": epoch})
    after = tree(directory)
    assert {k: v for k, v in after.items() if k in before} == before
    new = sorted(set(after) - set(before))
    save = published(directory).name
    assert new == sorted([".lock", "LATEST", save, f"{save}/manifest.json",
                          f"{save}/shard-00000-of-00001.safetensors"]), new
    assert checkpoint.load(directory, model=make_model(1)) == {"epoch": 2}


# ---------------------------------------------------------------------------------------- CLI


def _deep(m):
    m["extra"] = json.loads("[" * 300 + "]" * 300)


def _garbage(directory):
    manifest_path(directory).write_bytes(b"\xff\xfe{not json")


def _huge(directory):
    with open(manifest_path(directory), "r+b") as f:
        f.truncate(200 << 20)  # sparse: nothing is written, nothing may be read


def _huge_header(directory):
    path = shard(directory, 0)
    raw = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 10 ** 18) + raw[8:])
    refresh_shard_checksum(path)


MALFORMED = {
    # how the checkpoint (or the command) is malformed; what the error says
    "missing key": (lambda d: edit_manifest(d, lambda m: m.pop("files")), r"missing key 'files'"),
    "deep nesting": (lambda d: manifest_path(d).write_text('{"a":' * 100_000 + "1" + "}" * 100_000),
                     r"not valid JSON: nested too deeply|nested more than"),
    "deep nesting, checksum fixed": (lambda d: edit_manifest(d, _deep), r"nested"),
    "absurd shape": (lambda d: edit_manifest(d, lambda m: m["model"]["entries"][0].update(shape=[2 ** 40] * 3)),
                     r"has more than"),
    "string numbers": (lambda d: edit_manifest(d, lambda m: m["files"][0].update(bytes="1000")),
                       r"field files\[0\]\.bytes: expected an integer"),
    "not JSON": (_garbage, r"not valid JSON"),
    "a 200 MB manifest": (_huge, r"209715200 bytes; a checkpoint's manifest\.json is at most"),
    "a header claiming 10^18 bytes": (_huge_header, r"header of 1000000000000000000 bytes does not fit"),
    "a shard turned symlink": (lambda d: _symlink_instead(shard(d, 0), d.parent), r"is a symbolic link; refused"),
    "no checkpoint": (lambda d: (d / "LATEST").unlink(), r"no checkpoint in"),
}


SHARD_PROBLEMS = {"a header claiming 10^18 bytes", "a shard turned symlink"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["inspect", "consolidate"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_the_cli_ends_malformed_input_with_one_error_line_and_status_2(saved, tmp_path, capsys, case, command):
    directory = saved[0]
    how, message = MALFORMED[case]
    how(directory)
    args = [command, str(directory)] + ([str(tmp_path / "one.safetensors")] if command == "consolidate" else [])
    one_shard = case in SHARD_PROBLEMS and command == "inspect"
    assert main(args) == (1 if one_shard else 2)  # 1: the report is printed, and says which shard is bad
    if one_shard:
        assert re.search(message, "\n".join(checkpoint.inspect(directory)["checksums"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    assert len(err[0]) < 2000
    assert re.search(message, err[0]), err[0]
    with pytest.raises(CheckpointError, match=message):  # the Python API: the same input, the same error
        checkpoint.load(directory)


def test_the_cli_usage_errors_end_with_one_error_line_and_status_2(capsys, tmp_path):
    for args in ([], ["nonsense"], ["consolidate", str(tmp_path)], ["inspect"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2, args
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: "), args
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere'}: no such checkpoint directory"


@pytest.mark.timeout(120)
def test_the_cli_as_a_program_prints_no_traceback(saved, tmp_path):
    directory = saved[0]
    env = job_env()
    manifest_path(directory).write_text("[" * 100_000 + "]" * 100_000)
    for args in (["inspect", str(directory)], ["consolidate", str(directory), str(manifest_path(directory))]):
        done = subprocess.run([sys.executable, "-m", "distributed.checkpoint", *args], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr


# ---------------------------------------------------------------------------------------- every optimizer


def _optimizer_table():
    sys.path.insert(0, str(ROOT / "tests" / "optim"))
    import importlib.util
    spec = importlib.util.spec_from_file_location("_optim_configs", ROOT / "tests" / "optim" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CONFIGS


@pytest.mark.timeout(240)
@pytest.mark.parametrize("sharded", [False, True], ids=["replicated", "sharded"])
def test_every_optimizer_of_the_table_round_trips_its_state_exactly(tmp_path, sharded):
    """Scalar state is told apart by the optimizer's declared `scalar_state`, arrays by their elements."""
    from lucid import optim
    for number, (name, kwargs) in enumerate(_optimizer_table()):
        def build(seed):
            model = make_model(seed)
            opt = getattr(optim, name)(model.parameters(), **kwargs)
            wrapped = distributed.DistributedOptimizer(opt, model.named_parameters(), shard_state=sharded,
                                                       comm=SelfComm())
            return model, wrapped
        model, opt = build(0)
        train(model, opt, range(2))
        checkpoint.save(tmp_path / f"ck{number}", model=model, optimizer=opt)
        live, lopt = build(1)
        checkpoint.load(tmp_path / f"ck{number}", model=live, optimizer=lopt)
        assert_same(snapshot(live, lopt), snapshot(model, opt))
        train(model, opt, range(2, 3))
        train(live, lopt, range(2, 3))
        np.testing.assert_array_equal(flat_params(live), flat_params(model), err_msg=f"{name} {kwargs}")


def test_buffers_are_saved_from_rank_0_whole_and_loaded(tmp_path):
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    model(lucid.Tensor(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)))
    checkpoint.save(tmp_path / "ck", model=model)
    entries = {e["name"]: e["pieces"] for e in read_manifest(tmp_path / "ck")["model"]["entries"]}
    assert entries["1.running_mean"] == [[0, 0, 6]]
    live = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    checkpoint.load(tmp_path / "ck", model=live)
    for (name, a), b in zip(model.state_dict().items(), live.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
