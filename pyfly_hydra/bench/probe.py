"""Readiness probes: does the server answer ``url`` yet (with any HTTP status)?"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from urllib.parse import urlsplit

PROBE_TIMEOUT = 2.0


def insecure_context() -> ssl.SSLContext:
    """TLS without verification: we talk to our own server, usually with a test certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http1_answers(url: str) -> bool:
    """One HTTP/1.1 GET over a fresh connection (TLS without verification for https)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = f"GET {target or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=PROBE_TIMEOUT) as raw:
            sock: socket.socket = raw
            if parts.scheme == "https":
                sock = insecure_context().wrap_socket(raw, server_hostname=parts.hostname)
            sock.sendall(request)
            status_line = sock.recv(64).split(b"\r\n", 1)[0].split()
    except OSError:
        return False
    return len(status_line) >= 2 and status_line[0].startswith(b"HTTP/")


def http2_answers(url: str) -> bool:
    """One HTTP/2 request through h2load (prior knowledge for http, ALPN for https)."""
    if shutil.which("h2load") is None:
        return False
    try:
        done = subprocess.run(
            ["h2load", "-n", "1", "-c", "1", url], capture_output=True, text=True, timeout=PROBE_TIMEOUT + 3
        )
    except subprocess.TimeoutExpired:
        return False
    return ", 1 done," in done.stdout
