"""Light load on a recycling server, and its worker replacements read from its log as they happen."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from tests.conftest import RunningServer

# What each server logs when it replaces a worker: ours name the old pid and why, granian the slot.
REPLACED = {
    "granian": re.compile(r"Respawning (worker-\d+)"),
    "uvicorn": re.compile(r"uvicorn worker pid (\d+) (.*); replaced by pid \d+"),
    "hypercorn": re.compile(r"hypercorn worker pid (\d+) (.*); replaced by pid \d+"),
}
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")  # the runner's (Hydra's) log format
GRANIAN_LIFETIME = 60  # granian's shortest workers_lifetime
GRANIAN_RESPAWN_INTERVAL = 3.5  # granian starts the new worker this long before stopping the old one


@dataclass
class LoadWatch:
    """One keep-alive client and one new connection per request, ten rounds a second, on ``/loop``."""

    name: str  # "<server>-<what>"
    server: RunningServer
    pids: set[int] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    replacements: list[tuple[float, str, str]] = field(default_factory=list)  # (when, who, why)
    _log_offset: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def server_name(self) -> str:
        return self.name.split("-")[0]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load, name=f"load-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _load(self) -> None:
        with httpx.Client(timeout=10) as kept_alive, httpx.Client(timeout=10, headers={"connection": "close"}) as fresh:
            while not self._stop.is_set():
                for client in (kept_alive, fresh):
                    try:
                        response = client.get(self.server.url + "/loop")
                        self.requests += 1
                        if response.status_code != 200:
                            self.failures.append(f"status {response.status_code}")
                        else:
                            self.pids.add(response.json()["pid"])
                    except httpx.HTTPError as exc:
                        self.failures.append(repr(exc))
                self._stop.wait(0.1)

    def read_log(self) -> None:
        """Note the replacements logged since the last call, timed by their log lines."""
        text = self.server.log()
        complete = text.rfind("\n") + 1  # a line still being written waits for the next call
        new, self._log_offset = text[self._log_offset : complete], max(self._log_offset, complete)
        for line in new.splitlines():
            match, stamp = REPLACED[self.server_name].search(line), LOG_TIME.match(line)
            if match and stamp:
                when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                self.replacements.append((when, match.group(1), match.group(2) if match.lastindex == 2 else ""))
