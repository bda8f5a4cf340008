"""Runs a command as a child subreaper (Linux's PR_SET_CHILD_SUBREAPER): every process it
starts, and their children once orphaned, are reaped here, and each exit is printed as
`reaper: exit <pid> <code>` (a signal is a negative code). Exits when none is left.

An upgrade's old process exits after its child, the new one, has taken over: the new one is
then an orphan, and the test that checks how every old process exited needs to see them
all. Output of the command goes where this script's goes."""

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36

libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit(f"reaper: prctl failed: {os.strerror(ctypes.get_errno())}")



def say(line):
    """One line in one write: the children write to the same pipe, and print may write a
    line and its end apart (seen: another process's line between them)."""
    os.write(1, f"{line}\n".encode())


child = subprocess.Popen(sys.argv[1:])
say(f"reaper: started {child.pid}")
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    say(f"reaper: exit {pid} {os.waitstatus_to_exitcode(status)}")
