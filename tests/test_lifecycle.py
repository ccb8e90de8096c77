"""Stale folders: a run's folders are swept once nobody holds their lock, and never before."""

import os
import subprocess
import sys

from probe import lifecycle

HOLDER = """
import sys, time
from probe import lifecycle
print(lifecycle.owned_tempdir("gevent-probe-run-"), flush=True)
time.sleep(60)
"""


def test_a_live_runs_folder_stays_and_a_dead_runs_goes():
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        folder = holder.stdout.readline().strip()
        lifecycle.sweep_stale()
        assert os.path.isdir(folder)  # its run holds the lock
    finally:
        holder.kill()
        holder.wait()
    lifecycle.sweep_stale()
    assert not os.path.exists(folder)  # SIGKILL: the kernel dropped the lock


def test_a_pid_that_lives_on_does_not_keep_a_folder_whose_lock_is_gone(tmp_path):
    folder = lifecycle.owned_tempdir("gevent-probe-run-")
    os.close(lifecycle._held.pop(str(folder)))  # as if its run died; this pid lives on
    assert (folder / lifecycle.OWNER_FILE).read_text() == str(os.getpid())
    lifecycle.sweep_stale()
    assert not folder.exists()


def test_our_own_folders_are_not_swept_and_go_when_removed():
    with lifecycle.owned_scratch("gevent-probe-run-") as folder:
        lifecycle.sweep_stale()
        assert folder.is_dir()
        held = len(lifecycle._held)
    assert not folder.exists() and len(lifecycle._held) == held - 1
