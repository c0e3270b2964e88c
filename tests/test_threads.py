"""threads: one helper applies the thread policy; every command that computes takes --threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from speakerid.errors import SpeakerIdError
from speakerid.threads import WAIT_POLICY, quiet_openmp, use_threads

COMPUTING = ["train", "evaluate", "identify", "enroll", "verify", "calibrate", "demo", "serve", "plot-mfcc",
             "export-images"]


def test_use_threads_sets_torch_threads_and_none_leaves_them():
    before = torch.get_num_threads()
    try:
        use_threads(1)
        assert torch.get_num_threads() == 1
        use_threads(None)
        assert torch.get_num_threads() == 1
        with pytest.raises(SpeakerIdError, match="--threads must be 1 or more"):
            use_threads(0)
    finally:
        torch.set_num_threads(before)


def test_quiet_openmp_keeps_what_the_user_set(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    quiet_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == WAIT_POLICY == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    quiet_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize("command", COMPUTING)
def test_every_computing_command_takes_threads(command):
    done = subprocess.run([sys.executable, "-m", "speakerid", command, "--help"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0 and "--threads" in done.stdout, done.stdout


def test_the_command_line_sets_the_wait_policy_before_torch_loads_and_applies_threads(tmp_path):
    # A real command (verify of two missing files: it loads torch and the encoder, then fails on the
    # files) run by the CLI's own entry point; afterwards, the process's torch and environment are read.
    code = (
        "import os, sys\n"
        "from speakerid import cli\n"
        f"sys.argv = ['speakerid', 'verify', {str(tmp_path / 'a.wav')!r}, {str(tmp_path / 'b.wav')!r}]\n"
        "try:\n    cli.main()\nexcept SystemExit as done:\n    print('exit', done.code)\n"
        "import torch\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.split() == ["exit", "1", "PASSIVE", "1"], done.stdout + done.stderr
    assert "a.wav: no such file" in done.stderr
