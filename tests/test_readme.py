"""Every ```python block in README.md runs as pasted: a whole script, in a fresh directory, printing.

A block meant for several ranks starts with a line `# run: mpiexec -n N python [-m mpi4py] example.py`
and runs under exactly that command (`python` being this interpreter, `mpiexec` the one beside it);
any other block runs as `python example.py`. A ```bash block outside the two commands runs in the
directory of the python block before it (it continues that example). The two commands themselves
are only checked to be where CI (.ci/run) and the reader look for them; they are not run here.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from script_jobs import job_env, mpiexec, run, skip_if_under_mpi

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUN_LINE = re.compile(r"# run: (mpiexec -n (\d+) python (-m mpi4py )?example\.py)")
TIMEOUT_S = 180


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
    words = shlex.split(match.group(1))
    return [mpiexec(), *words[1:3], sys.executable, *words[4:]]


def ranks_of(command: list) -> int:
    return 1 if command[0] == sys.executable else int(command[2])


def run_block(request, code: str, cwd: Path) -> str:
    command = command_for(code)
    if ranks_of(command) > 1:
        skip_if_under_mpi(request.config)
    (cwd / "example.py").write_text(code, encoding="utf-8")
    return run(command, cwd, ranks=ranks_of(command), timeout=TIMEOUT_S)


@pytest.mark.timeout(TIMEOUT_S + 60)
@pytest.mark.parametrize("code, line", [(c, n) for _, c, n in CODE], ids=[f"line{n}" for _, _, n in CODE])
def test_python_block_runs_as_pasted(request, tmp_path, code, line):
    out = run_block(request, code, tmp_path)
    assert out.strip(), f"the block at README.md line {line} printed nothing: a reader cannot tell it worked"
    print(f"README.md line {line} ({ranks_of(command_for(code))} rank(s)): {out.strip().splitlines()[-1]}")


@pytest.mark.timeout(2 * TIMEOUT_S + 60)
@pytest.mark.parametrize("script, line", [(c, n) for _, c, n in CONTINUATIONS],
                         ids=[f"line{n}" for _, _, n in CONTINUATIONS])
def test_bash_block_continues_the_python_block_before_it(request, tmp_path, script, line):
    before = [(c, n) for _, c, n in CODE if n < line]
    assert before, f"the bash block at README.md line {line} follows no python block"
    run_block(request, before[-1][0], tmp_path)
    for text in script.strip().splitlines():
        argv = shlex.split(text, comments=True)
        assert argv[0] == "python", f"README.md line {line}: only python commands are run here, not {text!r}"
        assert run([sys.executable, *argv[1:]], tmp_path, env=job_env()).strip(), f"{text!r} printed nothing"


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
