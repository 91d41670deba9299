"""The main job's output: a progress bar on a terminal, plain lines in a pipe or a log file."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from script_jobs import job_env

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(ROOT / "scripts" / "train.py")


@pytest.mark.timeout(300)
def test_in_a_pipe_the_output_is_plain_lines():
    done = subprocess.run([sys.executable, TRAIN, "--epochs", "2"], capture_output=True, text=True, timeout=240,
                          env=job_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stdout + done.stderr, "a progress bar redraws with carriage returns in a log file"
    epochs = [line for line in done.stdout.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]


@pytest.mark.timeout(300)
def test_on_a_terminal_the_bar_is_drawn():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    try:
        job = subprocess.Popen([sys.executable, TRAIN, "--epochs", "1"], stdout=subprocess.PIPE, stderr=follower,
                               text=True, env=job_env(), cwd=ROOT)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the job is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        out, _ = job.communicate(timeout=240)
    finally:
        os.close(leader)
    assert job.returncode == 0, out
    bar = b"".join(chunks).decode(errors="replace")
    assert "train:" in bar and "\r" in bar, bar[-2000:]
    assert out.strip().splitlines()[-1].startswith("test accuracy: ")
