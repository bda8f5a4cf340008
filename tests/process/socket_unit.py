"""Plays systemd's part for a socket unit: holds a listening socket on a free loopback port
across restarts of the service, as `systemctl restart` with a `.socket` unit does.

Usage: socket_unit.py COMMAND [ARGS...], where PORT in an argument becomes the port. Prints
`socket-unit: listening on 127.0.0.1:<port>`, then reads lines from stdin:
- `start`: starts the command with the socket as descriptor 3, LISTEN_FDS=1 and LISTEN_PID
  its own pid (sh's `exec` keeps the pid);
- `stop`: sends it SIGTERM, waits, and prints `socket-unit: exit <code>`.
It exits at the end of stdin, stopping the command if it runs."""

import os
import signal
import socket
import subprocess
import sys

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
port = listener.getsockname()[1]
# Descriptor 3 in the children, as systemd passes it.
os.dup2(listener.fileno(), 3, inheritable=True)
command = [arg.replace("PORT", str(port)) for arg in sys.argv[1:]]
print(f"socket-unit: listening on 127.0.0.1:{port}", flush=True)

child = None


def stop():
    global child
    child.send_signal(signal.SIGTERM)
    code = child.wait()
    child = None
    print(f"socket-unit: exit {code}", flush=True)


for line in sys.stdin:
    what = line.strip()
    if what == "start":
        child = subprocess.Popen(
            ["sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"'] + command,
            pass_fds=(3,),
        )
    elif what == "stop":
        stop()
if child is not None:
    stop()
