"""One training per run directory at a time: a second one fails at once, in one line, and
writes nothing; a dead holder's lock file is no barrier."""

from __future__ import annotations

import subprocess
import sys
import time

from _helpers import TINY_TRAIN_FLAGS as TINY
from _helpers import one_line_error
from preattn.cli import main


def test_a_second_training_in_the_same_directory_fails_at_once(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(run / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        assert main(["train", *TINY, "--out", str(run)]) == 2
        assert time.monotonic() - started < 30
        assert "is in use by another training process" in one_line_error(capsys)
        assert not (run / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock file is no barrier
    assert main(["train", *TINY, "--out", str(run)]) == 0
