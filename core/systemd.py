"""The sd_notify protocol (READY, STATUS, WATCHDOG, STOPPING) for Type=notify units; silent elsewhere.

A datagram per message to $NOTIFY_SOCKET (a path, or '@' for the abstract
namespace), as systemd documents it; the few lines are not worth a dependency.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        # Ping at half the watchdog timeout, as sd_watchdog_enabled(3) advises.
        self.watchdog_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            pass  # systemd gone or restarting: nothing to tell, and no reason to stop sampling

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        if self.watchdog_s is not None:
            self.send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")
