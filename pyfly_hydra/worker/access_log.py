"""The access log: one line per request, the same on every server (``server.access_log``).

granian, uvicorn and hypercorn each log requests in their own format, with their own fields (uvicorn
none for the duration). pyfly-hydra logs them itself instead, from inside each worker (``worker.observe``), on
the ``pyfly_hydra.access`` logger: a text line like uvicorn's plus the fields a structured formatter
reads (``client``, ``method``, ``path``, ``protocol``, ``status``, ``duration_ms``), the duration
measured from the call into the app to the end of its response. A request a server refuses before
the app sees it (a malformed or oversized head) is not in it; the server's error log says so.

Every text field is escaped (``escaped``): a path is percent-decoded by the server, so ``%0d%0a``
would otherwise end the line and let a client write a second, well-formed one, and ``%1b`` would
reach a terminal as an escape sequence.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("pyfly_hydra.access")

ACCESS_FIELDS = ("client", "method", "path", "protocol", "status", "duration_ms")
FORMAT = '%s - "%s %s HTTP/%s" %d %.1f ms'
# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the quote and backslash that
# delimit and escape: written as Python-style escapes, so one request is one line that reads back.
_ESCAPES: dict[int, str] = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
    0x22: '\\"',
    0x5C: "\\\\",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escaped(text: str) -> str:
    """``text`` with control characters, line separators, quotes and backslashes escaped."""
    return text.translate(_ESCAPES)


def log_request(*, client: str, method: str, path: str, protocol: str, status: int, started: float) -> None:
    """Log one finished request on ``pyfly_hydra.access``, every text field escaped."""
    duration_ms = (time.perf_counter() - started) * 1000
    client, method, path, protocol = escaped(client), escaped(method), escaped(path), escaped(protocol)
    fields = {
        "client": client,
        "method": method,
        "path": path,
        "protocol": protocol,
        "status": status,
        "duration_ms": round(duration_ms, 3),
    }
    logger.info(FORMAT, client, method, path, protocol, status, duration_ms, extra=fields)
