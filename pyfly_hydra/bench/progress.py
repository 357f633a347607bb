"""A one-line live progress display for a running benchmark; silent when the stream is not a terminal."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

REDRAW_SECONDS = 0.5


class Progress:
    """Shows ``label  elapsed/duration s  live rps`` while load runs (rps when the client reports counts)."""

    def __init__(self, label: str, duration: float, stream: TextIO | None = None) -> None:
        self.label = label
        self.duration = duration
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._requests: int | None = None
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._redraw_loop, name="bench-progress", daemon=True)

    def update(self, elapsed: float, requests: int) -> None:
        """Record the client's count of completed requests (called from the client)."""
        self._requests = requests

    def line(self, elapsed: float) -> str:
        """The text of the progress line at ``elapsed`` seconds."""
        rate = f"{self._requests / elapsed:>10,.0f} rps" if self._requests is not None and elapsed > 0 else ""
        return f"{self.label}  {min(elapsed, self.duration):5.1f}/{self.duration:g} s {rate}"

    def _redraw_loop(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            self.stream.write("\r" + self.line(time.perf_counter() - self._started) + "\033[K")
            self.stream.flush()

    def __enter__(self) -> Progress:
        self._started = time.perf_counter()
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()
