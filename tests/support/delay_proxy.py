"""A TCP proxy that holds every chunk for a delay with jitter, in order (netem's delay, in userspace).

    python delay_proxy.py LISTEN_PORT TARGET_HOST:PORT CONTROL_FILE

CONTROL_FILE holds "DELAY_MS JITTER_MS" and is read for each chunk, so a test
turns the delay on and off without reconnecting. Exits when its parent does.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import socket
import sys
import threading
import time
from pathlib import Path


def delay(control: Path) -> float:
    try:
        ms, jitter = (float(x) for x in control.read_text().split())
    except (OSError, ValueError):
        return 0.0
    return max(0.0, random.uniform(ms - jitter, ms + jitter)) / 1000


def pipe(src: socket.socket, dst: socket.socket, control: Path) -> None:
    held: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def release() -> None:
        while True:
            at, data = held.get()
            time.sleep(max(0.0, at - time.monotonic()))
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=release, daemon=True).start()
    last = 0.0
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        last = max(last, time.monotonic() + delay(control))  # jitter without reordering a stream
        held.put((last, data))
        if not data:
            return


def main() -> None:
    port, target, control = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    host, _, tport = target.rpartition(":")
    server = socket.create_server(("127.0.0.1", port))
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection((host, int(tport)), timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b, control), daemon=True).start()


if __name__ == "__main__":
    main()
