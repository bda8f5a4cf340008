"""Keep-alive load from Python's http.client, for tests/process/python.rs.

    python3 keep_alive_client.py HOST PORT CLIENTS MODE

CLIENTS threads each keep one http.client.HTTPConnection and send GET / in a loop. MODE is
"reuse" (send on the kept connection without looking at it, as http.client does) or
"check" (before each reuse, look whether the server has closed it, as urllib3 does, and
reconnect if so). A response that says Connection: close makes http.client close the
connection; the next request opens a new one.

Prints "responses N" after the first 200 responses and then every 1000, and when stdin
closes, one line: "tally ok=N lost=N refused=N other=N". Lost is a request written whose
whole response never came back; refused, a connect refused or reset before any request was
written (the server stopped accepting).
"""

import http.client
import select
import sys
import threading

host, port, clients, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stop = threading.Event()
lock = threading.Lock()
tally = {"ok": 0, "lost": 0, "refused": 0, "other": 0}


def count(key, detail=None):
    with lock:
        tally[key] += 1
        if key == "ok" and (tally["ok"] == 200 or tally["ok"] % 1000 == 0):
            print(f"responses {tally['ok']}", flush=True)
        if key in ("lost", "other") and detail:
            print(f"{key}: {detail}", file=sys.stderr, flush=True)


def closed_by_server(conn):
    sock = conn.sock
    if sock is None:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)  # readable while idle: end of stream, or a reset


def client():
    conn = None
    while not stop.is_set():
        if conn is not None and mode == "check" and closed_by_server(conn):
            conn.close()
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            try:
                conn.connect()
            except (ConnectionRefusedError, ConnectionResetError):
                # Refused, or reset from the listening socket's backlog as it closed: no
                # request was written.
                count("refused")
                conn = None
                stop.wait(0.01)  # a refused client retries at its own pace
                continue
            except OSError as e:
                count("other", f"connect: {e!r}")
                conn = None
                continue
        fresh = getattr(conn, "_served", 0) == 0
        try:
            conn.request("GET", "/")
        except OSError as e:
            # Not written (or not whole): the server had already closed the connection.
            conn.close()
            conn = None
            count("refused" if isinstance(e, ConnectionRefusedError) else "other", None)
            continue
        try:
            response = conn.getresponse()
            response.read()
        except (http.client.HTTPException, OSError) as e:
            where = conn.sock.getsockname() if conn.sock else "?"
            count("lost", f"{e!r} from {where}, {'first' if fresh else 'a later'} request on its connection")
            conn.close()
            conn = None
            continue
        conn._served = getattr(conn, "_served", 0) + 1
        count("ok" if response.status == 200 else "other", f"status {response.status}")
        if response.will_close:
            conn.close()
            conn = None


threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
for t in threads:
    t.start()
sys.stdin.read()
stop.set()
for t in threads:
    t.join(timeout=10)
print("tally " + " ".join(f"{k}={v}" for k, v in tally.items()), flush=True)
