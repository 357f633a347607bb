"""systemd's readiness protocol (``sd_notify``): state lines sent as one datagram to ``$NOTIFY_SOCKET``.

With ``Type=notify`` (or ``notify-reload``) systemd sets ``NOTIFY_SOCKET`` and waits for ``READY=1`` before
it calls the service started; ``RELOADING=1`` and ``STOPPING=1`` tell it what a roll or a drain is doing.
Without the variable nothing is sent: the same runner works under any supervisor.
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger("pyfly_hydra")


def notify(*states: str) -> bool:
    """Send ``states`` (``READY=1``, ``STATUS=...``) to systemd; False when it is not listening."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(states).encode(), address)
    except OSError as error:
        logger.warning("NOTIFY_SOCKET=%s: %s (systemd is not told the server's state)", address.lstrip("\0"), error)
        return False
    return True


def reloading() -> tuple[str, str]:
    """``RELOADING=1`` with the monotonic time systemd's ``Type=notify-reload`` asks for."""
    return "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
