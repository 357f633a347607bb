"""WSGIBodyLimit in process: an unbounded body is never read far past the limit, and the answer is 413."""

from __future__ import annotations

import io
from typing import Any

import pytest

from pyfly_hydra.worker.limits import BodyTooLarge, WSGIBodyLimit

LIMIT = 1000


class EndlessBody(io.RawIOBase):
    """A chunked body that never ends, counting what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), 1 << 20)
        buffer[:size] = b"x" * size
        self.read_bytes += size
        return size


def answer(app: Any, body: io.RawIOBase, **environ: str) -> tuple[str, bytes]:
    statuses: list[str] = []
    stream = io.BufferedReader(body, buffer_size=8)  # servers' inputs hand over what was asked for
    result = WSGIBodyLimit(app, limit=LIMIT)(
        {"wsgi.input": stream, **environ}, lambda status, headers, exc_info=None: statuses.append(status)
    )
    return statuses[-1], b"".join(result)


def read_all(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    size = len(environ["wsgi.input"].read())
    start_response("200 OK", [])
    return [str(size).encode()]


def catches_everything(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """As Flask does: the read's error becomes the app's own 500."""
    try:
        environ["wsgi.input"].read()
    except Exception:
        start_response("500 Internal Server Error", [("Content-Length", "5")])
        return [b"oops!"]
    start_response("200 OK", [])
    return [b"read"]


@pytest.mark.parametrize(
    "reader",
    [
        lambda stream: stream.read(),
        lambda stream: stream.read(-1),
        lambda stream: stream.read(10**9),
        lambda stream: stream.readline(),
        lambda stream: stream.readlines(),
        lambda stream: list(stream),
    ],
)
def test_an_endless_body_is_read_one_byte_past_the_limit_at_most(reader: Any) -> None:
    body = EndlessBody()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        reader(environ["wsgi.input"])
        start_response("200 OK", [])
        return [b"unreachable"]

    assert answer(app, body) == ("413 Content Too Large", b"Request body too large")
    assert body.read_bytes <= 64 * 1024  # what one read of the server's buffer holds, not the stream


def test_the_answer_is_413_even_when_the_app_catches_the_error() -> None:
    assert answer(catches_everything, EndlessBody()) == ("413 Content Too Large", b"Request body too large")


def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    assert answer(read_all, io.BytesIO(b"y" * LIMIT)) == ("200 OK", str(LIMIT).encode())  # type: ignore[arg-type]
    assert answer(read_all, io.BytesIO(b"")) == ("200 OK", b"0")  # type: ignore[arg-type]


def test_a_declared_length_above_the_limit_is_refused_before_the_app() -> None:
    def never(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise AssertionError("the app ran")

    assert answer(never, EndlessBody(), CONTENT_LENGTH=str(LIMIT + 1))[0] == "413 Content Too Large"


def test_an_app_that_answered_before_reading_too_much_keeps_its_answer() -> None:
    def streams_then_reads(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        try:
            environ["wsgi.input"].read()
        except BodyTooLarge:
            return [b"partial"]
        return [b"whole"]

    assert answer(streams_then_reads, EndlessBody()) == ("200 OK", b"partial")
