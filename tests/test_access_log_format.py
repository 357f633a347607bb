"""``server.access_log_format`` and ``server.request_id``: the same line on every server, text and JSON, an
incoming X-Request-ID kept and returned, a hostile one replaced; in-process for ASGI and WSGI, and end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import httpx
import pytest

from pyfly_hydra.bench.process import free_port
from pyfly_hydra.registry import SERVER_NAMES
from pyfly_hydra.worker.access_log import AccessLog, AccessLogFormat
from pyfly_hydra.worker.exchange import HTTPExchange, WSGIExchange
from tests.conftest import assert_one_line_error, run_cli

FORMAT = (
    '{method} {path} q={query} {status} {bytes}B ua="{request.user-agent}" ct={response.content-type} id={request_id}'
)


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    seen = dict(scope["headers"]).get(b"x-request-id", b"").decode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"seen {seen}".encode()})


def _call_asgi(app: HTTPExchange, headers: list[tuple[bytes, bytes]]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    scope = {
        "type": "http", "method": "GET", "path": "/hello", "query_string": b"a=1", "http_version": "1.1",
        "headers": headers, "client": ("127.0.0.1", 5000),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[0]["headers"], sent[1]["body"]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "pyfly_hydra.access"]


def test_asgi_keeps_a_valid_request_id_and_logs_the_chosen_fields(caplog: pytest.LogCaptureFixture) -> None:
    app = HTTPExchange(_hello, metrics=None, access_log=AccessLog(AccessLogFormat.parse(FORMAT)), request_id=True)
    with caplog.at_level(logging.INFO, logger="pyfly_hydra.access"):
        status, headers, body = _call_asgi(app, [(b"user-agent", b"probe/1"), (b"x-request-id", b"abc-123")])
    assert (status, body) == (200, b"seen abc-123")
    assert (b"x-request-id", b"abc-123") in headers
    [record] = _access_lines(caplog)
    assert record.getMessage() == 'GET /hello?a=1 q=a=1 200 12B ua="probe/1" ct=text/plain id=abc-123'
    assert record.__dict__["request.user-agent"] == "probe/1"
    assert record.__dict__["access_fields"] == (
        "method", "path", "query", "status", "bytes", "request.user-agent", "response.content-type", "request_id"
    )  # fmt: skip


@pytest.mark.parametrize("incoming", [None, b"x" * 129, b"evil\r\n[forged] line", b"a b"])
def test_a_missing_or_hostile_request_id_is_replaced(incoming: bytes | None, caplog: pytest.LogCaptureFixture) -> None:
    access_log = AccessLog(AccessLogFormat.parse("{request_id}"))
    app = HTTPExchange(_hello, metrics=None, access_log=access_log, request_id=True)
    headers = [] if incoming is None else [(b"x-request-id", incoming)]
    with caplog.at_level(logging.INFO, logger="pyfly_hydra.access"):
        _, response_headers, body = _call_asgi(app, headers)
    new = dict(response_headers)[b"x-request-id"]
    assert re.fullmatch(rb"[0-9a-f]{32}", new)
    assert body == b"seen " + new  # the app sees the id it is answered with
    assert _access_lines(caplog)[0].getMessage() == new.decode()


def test_a_hostile_header_is_escaped_in_the_line(caplog: pytest.LogCaptureFixture) -> None:
    app = HTTPExchange(_hello, metrics=None, access_log=AccessLog(AccessLogFormat.parse(FORMAT)), request_id=False)
    with caplog.at_level(logging.INFO, logger="pyfly_hydra.access"):
        _call_asgi(app, [(b"user-agent", b'a"\r\n[2026] forged')])
    assert 'ua="a\\"\\x0d\\x0a[2026] forged"' in _access_lines(caplog)[0].getMessage()


def test_wsgi_gets_the_same_line_and_id(caplog: pytest.LogCaptureFixture) -> None:
    def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"seen {environ['HTTP_X_REQUEST_ID']}".encode()]

    app = WSGIExchange(hello, metrics=None, access_log=AccessLog(AccessLogFormat.parse(FORMAT)), request_id=True)
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/hello", "QUERY_STRING": "a=1", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": "probe/1", "HTTP_X_REQUEST_ID": "abc-123", "REMOTE_ADDR": "127.0.0.1",
    }  # fmt: skip
    started: list[Any] = []
    with caplog.at_level(logging.INFO, logger="pyfly_hydra.access"):
        body = app(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
        assert b"".join(body) == b"seen abc-123"
        body.close()  # type: ignore[attr-defined]
    assert ("X-Request-ID", "abc-123") in started[0][1]
    [record] = _access_lines(caplog)
    assert record.getMessage() == 'GET /hello?a=1 q=a=1 200 12B ua="probe/1" ct=text/plain id=abc-123'


@pytest.mark.parametrize(
    ("access_format", "fragment"),
    [
        ("{method} {colour}", "names {colour}"),
        ("{path:.1f}", "format spec"),
        ("{method", "is not a format"),
        ("{request.bad name}", "names {request.bad name}"),
    ],
)
def test_a_bad_format_is_one_line(access_format: str, fragment: str) -> None:
    setting = f"server.access_log_format='{access_format}'"
    result = run_cli("server.access_log=true", setting, f"server.port={free_port()}")
    assert_one_line_error(result, "server.access_log_format=", fragment)


def test_naming_the_request_id_needs_it_on() -> None:
    result = run_cli("server.access_log=true", "server.access_log_format='{request_id}'", f"server.port={free_port()}")
    assert_one_line_error(result, "server.access_log_format=", "set server.request_id=true")


LINE_FORMAT = '{method} {path} {status} {bytes} "{request.x-team}" {request_id} {response.content-type}'


@pytest.mark.parametrize("log", ["text", "json"])
def test_the_same_requests_give_the_same_lines_on_every_server(start_server, log: str) -> None:
    lines: dict[str, list[str]] = {}
    for server in SERVER_NAMES:
        running = start_server(
            f"server={server}", f"log={log}", "server.access_log=true", "server.request_id=true",
            f"server.access_log_format='{LINE_FORMAT}'",
        )  # fmt: skip
        with httpx.Client(base_url=running.url, timeout=5) as client:
            kept = client.get("/json?a=1", headers={"X-Team": "checkout", "X-Request-ID": "req-42"})
            assert kept.headers["x-request-id"] == "req-42"
            size, content_type = len(kept.content), kept.headers["content-type"]
            assert client.get("/missing", headers={"X-Request-ID": "req-43"}).status_code == 404
            fresh = client.get("/", headers={"X-Request-ID": "not valid!"})
            assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
        running.stop()
        access = [line for line in running.log().splitlines() if "pyfly_hydra.access" in line and "req-4" in line]
        if log == "json":
            lines[server] = [json.dumps({k: v for k, v in json.loads(line).items() if k != "time"}) for line in access]
        else:
            lines[server] = [line.partition("[INFO] - ")[2] for line in access]
    first = lines[SERVER_NAMES[0]]
    expected = f'GET /json?a=1 200 {size} "checkout" req-42 {content_type}'
    message = json.loads(first[0])["message"] if log == "json" else first[0]
    assert len(first) == 2 and message == expected, lines
    assert all(lines[server] == first for server in SERVER_NAMES), lines
