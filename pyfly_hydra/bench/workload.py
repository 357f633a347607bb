"""What a benchmark sends: a weighted mix of request kinds, each with the status a correct answer has."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pyfly_hydra.errors import ConfigError

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_BODY_BYTES = 64 * 1024 * 1024
EXAMPLES = {"name": "search", "path": "/items?q=shoes"}


def wrong_status(status: int, expect: int | None) -> bool:
    """Whether an answer's ``status`` is an error for a kind expecting ``expect`` (None: any 2xx or 3xx is right)."""
    return (status >= 400) if expect is None else (status != expect)


@dataclass(frozen=True)
class RequestKind:
    """One kind of request, ready to send."""

    name: str
    method: str
    path: str  # with the query, if any
    headers: tuple[tuple[str, str], ...]
    body: bytes
    weight: float
    expect: int | None  # None: any 2xx or 3xx is correct

    @property
    def plain_get(self) -> bool:
        """A GET without headers or body: what wrk and h2load take as a URL."""
        return self.method == "GET" and not self.headers and not self.body

    def correct(self, status: int) -> bool:
        """Whether ``status`` is the answer this kind expects."""
        return 200 <= status < 400 if self.expect is None else status == self.expect

    def encode(self, *, host: str, user_agent: str) -> bytes:
        """The HTTP/1.1 request bytes (Host, User-Agent and Content-Length added)."""
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}", f"User-Agent: {user_agent}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(frozen=True)
class Workload:
    """A named mix of request kinds."""

    name: str
    kinds: tuple[RequestKind, ...]

    @property
    def single_plain_get(self) -> bool:
        """One plain GET whose correct answer is any 2xx/3xx: what every client can send."""
        return len(self.kinds) == 1 and self.kinds[0].plain_get and self.kinds[0].expect in (None, 200)


def path_workload(path: str, *, key: str = "bench.path") -> Workload:
    """``bench.path=/x``: one GET of that path, any 2xx/3xx correct."""
    checked_path(key, path)
    return Workload(name=f"GET {path}", kinds=(RequestKind(path, "GET", path, (), b"", 1.0, None),))


def checked_path(key: str, path: str) -> str:
    """``path`` if it is a request target (``/...``, no whitespace); else one line naming ``key``."""
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise ConfigError(key, path, "must start with / and hold no spaces (escape them as %20)")
    return path


def workload_from_config(node: DictConfig) -> Workload:
    """``bench.workload``, checked: one clear line naming the request and the key for anything wrong."""
    requests = list(node.requests or [])
    if not requests:
        raise ConfigError("bench.workload.requests", [], "list at least one request (name, method, path, ...)")
    kinds = [_kind(f"bench.workload.requests[{i}]", request) for i, request in enumerate(requests)]
    names = [kind.name for kind in kinds]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise ConfigError("bench.workload.requests", duplicate, "each request needs its own name")
    return Workload(name=str(node.name), kinds=tuple(kinds))


def _kind(key: str, request: Any) -> RequestKind:
    for required in ("name", "path"):
        if OmegaConf.is_missing(request, required):
            raise ConfigError(f"{key}.{required}", None, f"is required (e.g. {required}: {EXAMPLES[required]})")
    name = request.name
    method = str(request.method).upper()
    if method not in METHODS:
        raise ConfigError(f"{key}.method", request.method, f"must be one of {', '.join(METHODS)}")
    path = checked_path(f"{key}.path", str(request.path))
    if not request.weight > 0:
        raise ConfigError(f"{key}.weight", request.weight, "must be a number > 0")
    if request.expect is not None and not 100 <= request.expect <= 599:
        raise ConfigError(f"{key}.expect", request.expect, "must be an HTTP status 100..599, or null (any 2xx/3xx)")
    headers = tuple((str(k), str(v)) for k, v in (request.headers or {}).items())
    for header, value in headers:
        if not header or any(c in header for c in ":\r\n ") or any(c in value for c in "\r\n"):
            raise ConfigError(f"{key}.headers", header, "must be a header name and a one-line value")
    return RequestKind(str(name), method, path, headers, _body(key, request), float(request.weight), request.expect)


def _body(key: str, request: Any) -> bytes:
    given = [k for k in ("body", "body_file", "body_size") if request[k] is not None]
    if len(given) > 1:
        raise ConfigError(
            f"{key}.{given[1]}", request[given[1]], f"set one of body, body_file, body_size, not {given[0]} too"
        )
    if request.body is not None:
        return str(request.body).encode()
    if request.body_file is not None:
        path = str(request.body_file)
        if not os.path.isfile(path):
            raise ConfigError(f"{key}.body_file", path, f"no such file ({os.path.abspath(path)})")
        if os.path.getsize(path) > MAX_BODY_BYTES:
            raise ConfigError(f"{key}.body_file", path, f"is larger than {MAX_BODY_BYTES // 1024 // 1024} MiB")
        with open(path, "rb") as file:
            return file.read()
    if request.body_size is not None:
        if not 0 <= request.body_size <= MAX_BODY_BYTES:
            raise ConfigError(f"{key}.body_size", request.body_size, f"must be 0..{MAX_BODY_BYTES} bytes")
        return b"x" * request.body_size
    return b""
