"""The access log: one line per request, the same on every server (``server.access_log``, ``server.access_log_format``).

granian, uvicorn and hypercorn each log requests in their own format, with their own fields (uvicorn
none for the duration). pyfly-hydra logs them itself instead, from inside each worker (``worker.exchange``), on
the ``pyfly_hydra.access`` logger, in a format over named fields (``FIELDS``, and any request or response
header): ``{method} {path} {status} {request.user-agent} {request_id}``. A structured formatter (``log=json``)
gets each field the format names as a field of its own (the default format's: client, method, path, protocol,
status, duration_ms), so a chosen format shapes the JSON lines too. A request a server refuses
before the app sees it (a malformed or oversized head) is not in it; the server's error log says so.

Every text field is escaped (``escaped``): a path is percent-decoded by the server, so ``%0d%0a``
would otherwise end the line and let a client write a second, well-formed one, and ``%1b`` would
reach a terminal as an escape sequence; a header is the client's to choose, so it is escaped too.
"""

from __future__ import annotations

import logging
import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("pyfly_hydra.access")

# The fields a format names, and what each is; {request.NAME} and {response.NAME} are headers.
FIELDS: dict[str, str] = {
    "client": "the client's address:port (the proxy's client with server.proxy_headers)",
    "method": "the request method",
    "path": "the path with its query, as requested",
    "query": "the query string alone",
    "protocol": "the HTTP version: 1.1, 2",
    "status": "the response status",
    "bytes": "the response body's bytes",
    "duration_ms": "milliseconds from the call into the app to the end of its response",
    "pid": "the worker's pid",
    "request_id": "the request's X-Request-ID (server.request_id)",
}
HEADER_PREFIXES = ("request.", "response.")
DEFAULT_FORMAT = '{client} - "{method} {path} HTTP/{protocol}" {status} {duration_ms:.1f} ms'
# A header name as RFC 9110 writes one (a token); lower-cased, as ASGI gives them.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the quote and backslash that
# delimit and escape: written as Python-style escapes, so one request is one line that reads back.
_ESCAPES: dict[int, str] = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
    0x22: '\\"',
    0x5C: "\\\\",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
NUMBERS = ("status", "bytes", "duration_ms", "pid")  # the others are text


def escaped(text: str) -> str:
    """``text`` with control characters, line separators, quotes and backslashes escaped."""
    return text.translate(_ESCAPES)


@dataclass(frozen=True)
class AccessLogFormat:
    """A parsed ``server.access_log_format``: literal text and ``{field:spec}`` pieces, checked once."""

    pieces: tuple[tuple[str, str | None, str], ...]  # (literal, field or None, format spec)

    @classmethod
    def parse(cls, template: str | None) -> AccessLogFormat:
        """The format, or ValueError naming what is wrong with it (an unknown field, a bad spec)."""
        try:
            parsed = list(string.Formatter().parse(template or DEFAULT_FORMAT))
        except ValueError as error:
            raise ValueError(f"is not a format ({error}); write fields as {{name}}, a literal brace as {{{{") from None
        pieces = []
        for literal, field, spec, conversion in parsed:
            if field is not None:
                field = field.lower()
                if conversion is not None or not (field in FIELDS or _header(field) is not None):
                    known = ", ".join(f"{{{name}}}" for name in FIELDS)
                    raise ValueError(f"names {{{field}}}: the fields are {known}, {{request.NAME}}, {{response.NAME}}")
            pieces.append((literal, field, spec or ""))
        access_format = cls(tuple(pieces))
        sample = {name: 0 if name in NUMBERS else "-" for name in access_format.names}
        try:  # a spec that fits no value of its field ({path:.1f}) is found now, not on every request
            access_format.render(sample)
        except ValueError as error:
            raise ValueError(f"has a format spec its field cannot take ({error})") from None
        return access_format

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(field for _, field, _ in self.pieces if field is not None)

    def headers(self, prefix: str) -> tuple[str, ...]:
        """The header names (lower case) the format takes from the request or the response (``prefix``)."""
        return tuple(name.removeprefix(prefix) for name in self.names if name.startswith(prefix))

    def render(self, values: dict[str, Any]) -> str:
        parts = []
        for literal, field, spec in self.pieces:
            parts.append(literal)
            if field is not None:
                parts.append(format(values[field], spec))
        return "".join(parts)


def _header(field: str) -> str | None:
    prefix = next((prefix for prefix in HEADER_PREFIXES if field.startswith(prefix)), None)
    name = field.removeprefix(prefix) if prefix else ""
    return name if prefix and _HEADER_NAME.fullmatch(name) else None


def header_values(headers: Iterable[tuple[bytes, bytes]], names: tuple[str, ...], prefix: str) -> dict[str, str]:
    """``{prefix + name: value}`` of each header named (several lines joined with ``, ``; ``-`` when absent)."""
    found: dict[str, list[str]] = {name: [] for name in names}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        if key in found:
            found[key].append(value.decode("latin-1"))
    return {prefix + name: escaped(", ".join(values)) if values else "-" for name, values in found.items()}


class AccessLog:
    """Writes the access line of each finished request in ``access_format``."""

    def __init__(self, access_format: AccessLogFormat) -> None:
        self.format = access_format
        self.request_headers = access_format.headers("request.")
        self.response_headers = access_format.headers("response.")
        self.json_fields = tuple(dict.fromkeys(access_format.names))
        self.pid = os.getpid()

    @staticmethod
    def enabled() -> bool:
        return logger.isEnabledFor(logging.INFO)

    def log(self, values: dict[str, Any]) -> None:
        """Log one request: ``values`` holds every field but ``pid`` (text already escaped, headers included)."""
        values["pid"] = self.pid
        fields = {name: values[name] for name in self.json_fields}
        logger.info("%s", self.format.render(values), extra={**fields, "access_fields": self.json_fields})


def request_values(
    *,
    client: str,
    method: str,
    path: str,
    query: str,
    protocol: str,
    status: int,
    sent: int,
    seconds: float,
    request_id: str | None,
) -> dict[str, Any]:
    """Every field of ``FIELDS`` but ``pid`` (the logger's) for one request, each text escaped."""
    return {
        "client": escaped(client),
        "method": escaped(method),
        "path": escaped(path + ("?" + query if query else "")),
        "query": escaped(query) or "-",
        "protocol": escaped(protocol),
        "status": status,
        "bytes": sent,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": request_id or "-",
    }
