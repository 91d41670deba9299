"""Every ```python block in README.md runs as pasted: a whole script, in a fresh directory, printing.

A block meant for several ranks starts with a line `# run: mpiexec -n N python [-m mpi4py] example.py`
and runs under exactly that command (`python` being this interpreter, `mpiexec` the one beside it);
any other block runs as `python example.py`. A ```bash block outside the two commands runs in the
directory of the python block before it (it continues that example). The two commands themselves
are only checked to be where CI (.ci/run) and the reader look for them; they are not run here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import distributed

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUN_LINE = re.compile(r"# run: (mpiexec -n (\d+) python (-m mpi4py )?example\.py)")
TIMEOUT_S = 180
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCAL", "PYTEST_")


def blocks(text: str) -> list:
    """(language, code, line number) of every fenced block, in order."""
    found = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.M | re.S):
        found.append((match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1))
    return found


def between(text: str, marker: str) -> str:
    """The text between `<!-- marker -->` and `<!-- /marker -->`."""
    match = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", text, flags=re.S)
    assert match, f"README.md has no <!-- {marker} --> ... <!-- /{marker} --> section"
    return match.group(1)


README_TEXT = README.read_text(encoding="utf-8")
CODE = [b for b in blocks(README_TEXT) if b[0] == "python"]
CONTINUATIONS = [b for b in blocks(README_TEXT) if b[0] == "bash"
                 and b[1] not in between(README_TEXT, "main-command") + between(README_TEXT, "test-command")]


def command_for(code: str) -> list:
    """The command a block says it runs under (argv, with this Python and its mpiexec)."""
    first = code.splitlines()[0]
    match = RUN_LINE.fullmatch(first.strip())
    if first.startswith("# run:") and not match:
        pytest.fail(f"unrecognised run line {first!r}: expected '# run: mpiexec -n N python [-m mpi4py] example.py'")
    if not match:
        return [sys.executable, "example.py"]
    mpiexec = Path(sys.executable).with_name("mpiexec")
    launcher = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if launcher is None:
        pytest.skip("no mpiexec beside this Python or on PATH (pip install mpich)")
    return [launcher, *shlex.split(match.group(1))[1:3], sys.executable, *shlex.split(match.group(1))[4:]]


def clean_env() -> dict:
    """Without an outer launcher's (or pytest's) variables: the block is a job of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCHER_PREFIXES)}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def run(command: list, cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, (f"$ {' '.join(command)}  (in {cwd})\n--- stdout\n{done.stdout[-4000:]}\n"
                                  f"--- stderr\n{done.stderr[-4000:]}")
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return done.stdout


def skip_if_nested(request, command: list) -> None:
    if command[0] != sys.executable and (distributed.launched_by_mpi() or
                                         request.config.getoption("--with-mpi", default=False)):
        pytest.skip("running under MPI: a README block's own mpiexec job is not launched from inside one")


@pytest.mark.timeout(TIMEOUT_S + 60)
@pytest.mark.parametrize("code, line", [(c, n) for _, c, n in CODE], ids=[f"line{n}" for _, _, n in CODE])
def test_python_block_runs_as_pasted(request, tmp_path, code, line):
    command = command_for(code)
    skip_if_nested(request, command)
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    out = run(command, tmp_path)
    assert out.strip(), f"the block at README.md line {line} printed nothing: a reader cannot tell it worked"
    ranks = int(command[2]) if command[0] != sys.executable else 1
    print(f"README.md line {line} ({ranks} rank(s)): {out.strip().splitlines()[-1]}")


@pytest.mark.timeout(2 * TIMEOUT_S + 60)
@pytest.mark.parametrize("script, line", [(c, n) for _, c, n in CONTINUATIONS],
                         ids=[f"line{n}" for _, _, n in CONTINUATIONS])
def test_bash_block_continues_the_python_block_before_it(request, tmp_path, script, line):
    before = [(c, n) for _, c, n in CODE if n < line]
    assert before, f"the bash block at README.md line {line} follows no python block"
    code, _ = before[-1]
    command = command_for(code)
    skip_if_nested(request, command)
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    run(command, tmp_path)
    bin_dir = str(Path(sys.executable).parent)
    for text in script.strip().splitlines():
        argv = shlex.split(text, comments=True)
        if argv[0] == "python":
            argv[0] = sys.executable
        assert run(argv, tmp_path).strip(), f"{text!r} printed nothing"
    assert bin_dir  # the commands ran with this interpreter


def test_every_python_block_is_tested():
    assert len(CODE) >= 4, "README.md lost its quick starts?"
    for _, code, line in CODE:
        assert code.strip(), f"empty python block at README.md line {line}"


def test_the_two_commands_are_between_their_markers():
    for marker, must_contain in (("main-command", "scripts/train.py"), ("test-command", "python -m pytest")):
        section = between(README_TEXT, marker)
        inner = [b for b in blocks(section) if b[0] == "bash"]
        assert len(inner) == 1, f"{marker}: expected one ```bash block, found {len(inner)}"
        command = inner[0][1].strip()
        assert len(command.splitlines()) == 1 and must_contain in command, command
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install "), command
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci  # CI runs exactly the README's test command


def test_a_run_line_that_is_not_the_documented_form_is_rejected():
    with pytest.raises(pytest.fail.Exception, match="unrecognised run line"):
        command_for("# run: mpirun -np 2 python other.py\nprint(1)\n")
    assert command_for("print(1)\n") == [sys.executable, "example.py"]
