"""Keep-alive clients sending back to back, as a deploy drill needs them: every answer and every failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx


@dataclass
class Load:
    """Every answer (when, body) and every failure of clients sending to ``url`` back to back."""

    url: str
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(self.url)
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:80]}")
                    continue
                self.answers.append((time.monotonic(), response.text))


@contextmanager
def keep_alive_clients(url: str, *, clients: int = 6) -> Iterator[Load]:
    """``clients`` threads sending to ``url`` until the block ends."""
    running = Load(url)
    threads = [threading.Thread(target=running.client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        for thread in threads:
            thread.join(timeout=15)
