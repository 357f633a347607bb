"""The slow-client drill: slowloris and stalled-body connections next to normal traffic.

A few hundred connections each send a request head one byte every ``trickle`` seconds (slowloris),
some more send a POST's head and half its body to ``/upload`` (the demo app reads every body there)
and then nothing (slow POST), while one client sends
normal keep-alive requests as fast as they are answered. The drill reports, per kind of slow
connection, how many the server closed and how long it took, and the normal requests' count,
failures and p99 during the drill against a calm baseline just before it. Only the given loopback
address is contacted; every connection and loop is bounded by ``duration``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

HEAD = b"GET / HTTP/1.1\r\nHost: drill\r\nUser-Agent: slowloris\r\n"
NORMAL_REQUEST = b"GET / HTTP/1.1\r\nHost: drill\r\n\r\n"
POST_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class SlowFigures:
    """What the server did with one kind of slow connection."""

    opened: int  # connections the server accepted (one refused at connect is not held, nor closed)
    closed: int  # closed by the server before the drill ended
    median_seconds: float | None  # from connect to the server's close, over the closed ones
    max_seconds: float | None

    def describe(self) -> str:
        """``closed 200/200 after 2.0 s (max 2.1 s)`` or ``held 100/100``."""
        if not self.closed:
            return f"held {self.opened}/{self.opened}"
        return f"closed {self.closed}/{self.opened} after {self.median_seconds:.1f} s (max {self.max_seconds:.1f} s)"


@dataclass(frozen=True)
class NormalFigures:
    """The normal keep-alive client's requests."""

    answered: int
    failed: int
    p99_ms: float | None

    def describe(self) -> str:
        """``1,234 answered, 0 failed, p99 1.2 ms``."""
        p99 = f"{self.p99_ms:.1f} ms" if self.p99_ms is not None else "n/a"
        return f"{self.answered:,} answered, {self.failed} failed, p99 {p99}"


@dataclass(frozen=True)
class DrillResult:
    """The whole drill."""

    slowloris: SlowFigures
    slow_post: SlowFigures
    baseline: NormalFigures
    during: NormalFigures


async def _hold(
    host: str,
    port: int,
    first: bytes,
    trickle: bytes,
    every: float,
    until: float,
    opened: list[float],
    closes: list[float],
) -> None:
    """Send ``first``, then ``trickle`` every ``every`` seconds (never, if empty) until the server closes."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    opened.append(started)
    try:
        writer.write(first)
        await writer.drain()
        while time.monotonic() < until:
            wait = min(every, until - time.monotonic()) if trickle else until - time.monotonic()
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout=max(wait, 0.01))
            except TimeoutError:
                if trickle:
                    writer.write(trickle)
                    await writer.drain()
                continue
            if not data:  # the server closed it (answers such as 408 are read, then the close)
                closes.append(time.monotonic() - started)
                return
    except (ConnectionError, OSError):
        closes.append(time.monotonic() - started)
    finally:
        writer.close()


async def _normal(host: str, port: int, until: float) -> NormalFigures:
    """Sequential keep-alive GETs until ``until``; reconnects after a failure."""
    latencies: list[float] = []
    failed = 0
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < until:
        sent = time.perf_counter()
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(NORMAL_REQUEST)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await asyncio.wait_for(reader.readexactly(length), timeout=5)
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
            latencies.append((time.perf_counter() - sent) * 1000)
            if b"\r\nconnection: close" in head.lower():  # e.g. hypercorn after 1,000 requests on one connection
                writer.close()
                reader = writer = None
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            failed += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else None
    return NormalFigures(answered=len(latencies), failed=failed, p99_ms=p99)


def _figures(opened: int, closes: list[float]) -> SlowFigures:
    return SlowFigures(
        opened=opened,
        closed=len(closes),
        median_seconds=statistics.median(closes) if closes else None,
        max_seconds=max(closes) if closes else None,
    )


async def _drill(
    host: str, port: int, *, slowloris: int, slow_posts: int, duration: float, trickle: float, baseline: float
) -> DrillResult:
    calm = await _normal(host, port, time.monotonic() + baseline)
    until = time.monotonic() + duration
    loris_opened: list[float] = []
    loris_closes: list[float] = []
    post_opened: list[float] = []
    post_closes: list[float] = []
    post_head = (
        b"POST /upload HTTP/1.1\r\nHost: drill\r\nContent-Type: application/octet-stream\r\n"
        + f"Content-Length: {POST_BODY_BYTES}\r\n\r\n".encode()
        + b"x" * (POST_BODY_BYTES // 2)
    )
    tasks = [
        *(_hold(host, port, HEAD, b"X", trickle, until, loris_opened, loris_closes) for _ in range(slowloris)),
        *(_hold(host, port, post_head, b"", trickle, until, post_opened, post_closes) for _ in range(slow_posts)),
    ]
    slow = asyncio.gather(*tasks)
    await asyncio.sleep(min(0.5, duration / 4))  # let the slow connections pile up first
    during = await _normal(host, port, until)
    await slow
    return DrillResult(
        slowloris=_figures(len(loris_opened), loris_closes),
        slow_post=_figures(len(post_opened), post_closes),
        baseline=calm,
        during=during,
    )


def run_slow_client_drill(
    port: int,
    *,
    host: str = "127.0.0.1",
    slowloris: int = 200,
    slow_posts: int = 50,
    duration: float = 6.0,
    trickle: float = 0.5,
    baseline: float = 1.5,
) -> DrillResult:
    """Run the drill against ``host:port`` (loopback only) and return its figures."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"the drill only targets loopback, not {host}")
    return asyncio.run(
        _drill(
            host,
            port,
            slowloris=slowloris,
            slow_posts=slow_posts,
            duration=duration,
            trickle=trickle,
            baseline=baseline,
        )
    )
