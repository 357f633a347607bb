"""The HTTP/1.1 wire pieces both of the builtin client's loops use: the target, its requests, the response parser."""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable
from itertools import accumulate
from urllib.parse import urlsplit

from pyfly_hydra.bench.probe import insecure_context
from pyfly_hydra.bench.workload import Workload, path_workload

USER_AGENT = "pyfly-hydra-bench"

# Parser states.
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE = range(6)
_NO_BODY_STATUSES = frozenset({204, 304})


class ResponseParser:
    """Incremental HTTP/1.1 response parser for responses to GET requests.

    ``feed`` takes bytes as they arrive, split anywhere, and returns how many responses they completed; the status
    of each completed response is appended to ``statuses`` (the caller clears it) and ``keep_alive`` tells whether
    the last response's connection stays open. A body is framed by ``Transfer-Encoding: chunked``, else
    ``Content-Length``, else the connection's end (see ``feed_eof``). Malformed input raises ``ValueError``.
    """

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.keep_alive = True
        self._buffer = bytearray()
        self._state = _HEAD
        self._scan = 0  # where the search for the end of the header block resumes
        self._remaining = 0  # body or chunk bytes still to skip
        self._status = 0

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return the number of responses it completed."""
        buffer = self._buffer
        buffer += data
        done = 0
        while buffer:
            state = self._state
            if state == _HEAD:
                if not self._head(buffer):
                    break
                if self._state == _HEAD and self._status >= 200:  # no body at all
                    done += self._complete()
            elif state in (_BODY, _CHUNK_DATA):
                if not self._skip(buffer):
                    break
                if state == _BODY:
                    done += self._complete()
                else:
                    self._state = _CHUNK_SIZE
            elif state == _UNTIL_CLOSE:
                buffer.clear()
            else:
                line = self._line(buffer)
                if line is None:
                    break
                if state == _CHUNK_SIZE:
                    self._chunk_size(line)
                elif not line:  # the empty line that ends the trailers
                    done += self._complete()
        return done

    def feed_eof(self) -> int:
        """The connection ended: return 1 when that completed a response framed by the connection's end."""
        if self._state != _UNTIL_CLOSE:
            return 0
        self._state = _HEAD
        return self._complete()

    def _head(self, buffer: bytearray) -> bool:
        end = buffer.find(b"\r\n\r\n", self._scan)
        if end < 0:
            self._scan = max(0, len(buffer) - 3)
            return False
        if not buffer.startswith(b"HTTP/1.") or buffer[12:13] not in (b" ", b"\r"):
            raise ValueError(f"not an HTTP/1.x status line: {bytes(buffer[:40])!r}")
        status = int(buffer[9:12])
        http11 = buffer[7] == 0x31  # b"1" of HTTP/1.1
        head = buffer[: end + 2].lower()  # every header line, status line excluded, is found as b"\r\nname:"
        del buffer[: end + 4]
        self._scan = 0
        self._status = status
        connection = _header(head, b"\r\nconnection:")
        self.keep_alive = b"close" not in connection if http11 else b"keep-alive" in connection
        self._state = _HEAD  # 1xx: informational, the real response follows; 204, 304, Content-Length 0: no body
        if status < 200 or status in _NO_BODY_STATUSES:
            return True
        if _header(head, b"\r\ntransfer-encoding:").endswith(b"chunked"):
            self._state = _CHUNK_SIZE
            return True
        length = _header(head, b"\r\ncontent-length:")
        if not length:
            self._state = _UNTIL_CLOSE
            return True
        self._remaining = int(length)
        if self._remaining < 0:
            raise ValueError(f"negative Content-Length: {bytes(length)!r}")
        if self._remaining:
            self._state = _BODY
        return True

    def _skip(self, buffer: bytearray) -> bool:
        """Drop up to ``_remaining`` bytes; True when all of them are gone."""
        remaining = self._remaining
        if len(buffer) < remaining:
            self._remaining = remaining - len(buffer)
            buffer.clear()
            return False
        del buffer[:remaining]
        return True

    def _line(self, buffer: bytearray) -> bytearray | None:
        end = buffer.find(b"\r\n")
        if end < 0:
            return None
        line = buffer[:end]
        del buffer[: end + 2]
        return line

    def _chunk_size(self, line: bytearray) -> None:
        size = int(line.split(b";", 1)[0], 16)
        if size < 0:
            raise ValueError(f"negative chunk size: {bytes(line)!r}")
        if size:
            self._remaining = size + 2  # the data and its CRLF
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILERS

    def _complete(self) -> int:
        self._state = _HEAD
        self.statuses.append(self._status)
        return 1


def _header(head: bytearray, prefix: bytes) -> bytearray:
    """The stripped value of the header ``prefix`` (b"\\r\\nname:") in a lowercased header block (empty if absent)."""
    start = head.find(prefix)
    if start < 0:
        return bytearray()
    start += len(prefix)
    return head[start : head.find(b"\r\n", start)].strip()


class Target:
    """Where to connect and the request kinds to send (the workload, or a GET of the URL's path)."""

    def __init__(self, url: str, workload: Workload | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = insecure_context() if parts.scheme == "https" else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.kinds = (workload or path_workload(path)).kinds
        self.requests = [kind.encode(host=f"{host}:{self.port}", user_agent=USER_AGENT) for kind in self.kinds]


def kind_chooser(weights: list[float]) -> Callable[[], int]:
    """A function picking a kind's index at random in proportion to ``weights`` (seeded: runs repeat)."""
    if len(weights) == 1:
        return lambda: 0
    cumulative = list(accumulate(weights))
    total, draw = cumulative[-1], random.Random(0).random
    return lambda: bisect(cumulative, draw() * total)
