"""Two saves into one checkpoint directory at once (two jobs, or a job and its restarted copy): whatever
the interleaving, the directory always holds one whole checkpoint, and a save that lost the race says so.

Each trial forks two savers with random delays (some with a deliberately slow manifest write) and then
checks what a load finds against what each saver reported. The savers are forked processes (not MPI
jobs), each its own single-process world, as two `python train.py` runs would be.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import sys
import time

import numpy as np
import pytest

from lucid import optim

from distributed import checkpoint
from distributed import comm as comm_module
from distributed.checkpoint import CheckpointError
from distributed.comm import SelfComm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the shared workload
from checkpoint_workload import make_model, published, train  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
LOST = "another save into this checkpoint directory is in progress"


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    monkeypatch.setattr(comm_module, "_world", SelfComm())  # the forked savers must not touch MPI


@pytest.fixture
def trained():
    model = make_model(0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    train(model, opt, range(1))  # Adam has its state (and its kernel is compiled before any fork)
    return model, opt


def set_version(model, opt, version: int) -> None:
    """Every value of the parameters and of Adam's state, and the step, say `version`."""
    for p in model.parameters():
        p.data[...] = version
        opt.state[p]["exp_avg"][...] = version + 0.25
        opt.state[p]["step"] = version


def loaded_version(directory) -> int:
    """Load the checkpoint into a fresh model and optimizer, check every value says one version, return it."""
    model = make_model(1)
    opt = optim.Adam(model.parameters(), lr=0.01)
    version = checkpoint.load(directory, model=model, optimizer=opt)["version"]
    for p in model.parameters():
        assert np.all(p.data == version) and np.all(opt.state[p]["exp_avg"] == version + 0.25)
        assert opt.state[p]["step"] == version
    return version


def slow_manifest_writes(seconds: float, marker: pathlib.Path) -> None:
    """In this (forked) process, writing a manifest takes `seconds` longer (`marker` appears as it starts)."""
    from distributed.checkpoint import _directory
    real = _directory.write_json

    def slow(path, document):
        marker.touch()
        time.sleep(seconds)
        real(path, document)
    _directory.write_json = slow


def fork_saver(model, opt, directory, version: int, delay: float, slow: float, report: pathlib.Path) -> int:
    """fork(): the child waits `delay`, saves `version`, and reports {"outcome", "finished"} into `report`."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child never returns into pytest
        if slow:
            slow_manifest_writes(slow, report.with_suffix(".writing"))
        set_version(model, opt, version)
        time.sleep(delay)
        try:
            checkpoint.save(directory, model=model, optimizer=opt, extra={"version": version})
            outcome = "saved"
        except CheckpointError as exc:
            outcome = str(exc)
        report.write_text(json.dumps({"outcome": outcome, "finished": time.monotonic()}))
    finally:
        os._exit(0)


def only_one_save_left(directory: pathlib.Path) -> None:
    save = published(directory)
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "LATEST", save.name]
    assert sorted(p.name for p in save.iterdir()) == ["manifest.json", "shard-00000-of-00001.safetensors"]


@pytest.mark.timeout(120)
def test_two_saves_racing_into_one_directory_always_leave_one_whole_checkpoint(tmp_path, trained):
    model, opt = trained
    directory = tmp_path / "ck"
    set_version(model, opt, 0)
    checkpoint.save(directory, model=model, optimizer=opt, extra={"version": 0})
    rng = random.Random(3)
    previous, lost, both = 0, 0, 0
    for trial in range(30):
        versions = (2 * trial + 1, 2 * trial + 2)
        reports = [tmp_path / f"report-{v}" for v in versions]
        slow = [0.04 if trial % 3 == k else 0.0 for k in range(2)]  # a slow manifest write, first or second
        pids = [fork_saver(model, opt, directory, v, rng.uniform(0, 0.03), s, r)
                for v, s, r in zip(versions, slow, reports)]
        for pid in pids:
            os.waitpid(pid, 0)
        results = [json.loads(r.read_text()) for r in reports]
        saved = [(res["finished"], v) for v, res in zip(versions, results) if res["outcome"] == "saved"]
        for res in results:  # the only way to lose is to be told so, before anything was written
            assert res["outcome"] == "saved" or LOST in res["outcome"], res["outcome"]
        expected = max(saved)[1] if saved else previous
        assert loaded_version(directory) == expected, (trial, results)
        only_one_save_left(directory)
        previous = expected
        lost += len(saved) < 2
        both += len(saved) == 2
    assert lost >= 3, f"the savers never collided (lost {lost}, both saved {both}): the test proves nothing"


@pytest.mark.timeout(60)
def test_a_save_started_during_a_slow_manifest_write_fails_and_changes_nothing(tmp_path, trained):
    model, opt = trained
    directory = tmp_path / "ck"
    set_version(model, opt, 1)
    checkpoint.save(directory, model=model, optimizer=opt, extra={"version": 1})
    report = tmp_path / "report"
    pid = fork_saver(model, opt, directory, 2, 0.0, 1.0, report)  # holds the lock for over a second
    deadline = time.monotonic() + 30
    while not report.with_suffix(".writing").exists():  # the slow save is writing its manifest
        assert time.monotonic() < deadline, "the slow save did not start"
        time.sleep(0.005)
    before = sorted(str(p) for p in directory.rglob("*"))
    set_version(model, opt, 3)
    with pytest.raises(CheckpointError, match=rf"{LOST} \(pid {pid} on .*\); this save wrote nothing"):
        checkpoint.save(directory, model=model, optimizer=opt, extra={"version": 3})
    assert sorted(str(p) for p in directory.rglob("*")) == before
    assert loaded_version(directory) == 1  # the slow save has not published yet
    os.waitpid(pid, 0)
    assert json.loads(report.read_text())["outcome"] == "saved"
    assert loaded_version(directory) == 2
    only_one_save_left(directory)
    checkpoint.save(directory, model=model, optimizer=opt, extra={"version": 3})  # the lock went with the saver
    assert loaded_version(directory) == 3
