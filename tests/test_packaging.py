"""The distribution as a user gets it: `pip install .` (a wheel, not editable), used from another directory.

The wheel must carry the data set, both `py.typed` markers, the licences and one version; installed
on its own (not the checkout) it must run the main job from a directory that is not the checkout.
"""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import distributed
import lucid
from script_jobs import job_env

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def copy_of_the_source(source: Path) -> None:
    """The tracked files into `source`: `git ls-files` in a checkout; elsewhere (CI's clean copy of the
    tracked files, with a venv and test outputs beside them) the tree without what .gitignore names."""
    if shutil.which("git") is not None and (ROOT / ".git").exists():
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        for name in filter(None, files.decode().split("\0")):
            if (ROOT / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, source / name)
        return
    lines = (ROOT / ".gitignore").read_text().splitlines()
    ignored = [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]
    assert not [p for p in ignored if "/" in p or p.startswith("!")], ".gitignore outgrew this copy: use git"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*ignored), dirs_exist_ok=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the tracked files (what `pip install .` builds)."""
    source = tmp_path_factory.mktemp("source")
    copy_of_the_source(source)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                           capture_output=True, text=True, env=job_env(), timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("lucid_distributed-*.whl")
    return found


def test_one_version_and_the_licence_agree():
    assert lucid.__version__ == distributed.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", lucid.__version__), lucid.__version__
    assert re.search(r'^license = "MIT"$', PYPROJECT, flags=re.M)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert '"Typing :: Typed"' in PYPROJECT


@pytest.mark.timeout(600)
def test_the_wheel_carries_data_types_licences_and_the_version(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("lucid/py.typed", "distributed/py.typed", "lucid/datasets/data/digits.csv.gz",
                   "lucid/datasets/data/LICENSE-digits.txt", "distributed/checkpoint/__main__.py"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "examples/"))]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Version: {lucid.__version__}\n" in metadata
    assert "License-Expression: MIT\n" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


@pytest.mark.timeout(600)
def test_installed_not_editable_the_main_job_runs_from_another_directory(wheel, tmp_path):
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, env=job_env(), timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy2(ROOT / "scripts" / "train.py", elsewhere / "train.py")
    code = ("import sys, runpy, lucid, distributed\n"
            f"assert lucid.__file__.startswith({str(target)!r}), lucid.__file__\n"
            f"assert distributed.__file__.startswith({str(target)!r}), distributed.__file__\n"
            "sys.argv = ['train.py', '--epochs', '2']\n"
            "runpy.run_path('train.py', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                          env=job_env(PYTHONPATH=str(target)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"test accuracy: 0\.\d{3}", last) and float(last.split()[-1]) >= 0.9, done.stdout
