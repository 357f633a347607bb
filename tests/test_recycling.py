"""Worker recycling by lifetime and by memory, on every server, under light load: 0 failed requests.

All six servers run at once (granian will not recycle before 60 s, so the others share its minute).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise

import httpx
import pytest

from tests.conftest import RunningServer, assert_one_line_error, run_cli

# What each server logs when it replaces a worker: ours name the old pid, granian names the slot.
REPLACED = {
    "granian": re.compile(r"Respawning (worker-\d+)"),
    "uvicorn": re.compile(r"uvicorn worker pid (\d+) (.*); replaced by pid \d+"),
    "hypercorn": re.compile(r"hypercorn worker pid (\d+) (.*); replaced by pid \d+"),
}
LIFETIME = re.compile(r"reached its lifetime of ([\d.]+) s")
OUR_LIFETIME = 4
GRANIAN_LIFETIME = 60  # granian's minimum
GRANIAN_RESPAWN_INTERVAL = 3.5


@dataclass
class Watch:
    """Light load on one server (one keep-alive client, one new connection per request) and its log, timed."""

    name: str
    server: RunningServer
    pids: set[int] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    replacements: list[tuple[float, str, str]] = field(default_factory=list)  # (when, who, why)
    _log_offset: int = 0

    def load(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=10) as kept_alive, httpx.Client(timeout=10, headers={"connection": "close"}) as fresh:
            while not stop.is_set():
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
                stop.wait(0.1)

    def read_log(self) -> None:
        text = self.server.log()
        new, self._log_offset = text[self._log_offset :], len(text)
        now = time.monotonic()
        for match in REPLACED[self.server_name].finditer(new):
            self.replacements.append((now, match.group(1), match.group(2) if match.lastindex == 2 else ""))

    @property
    def server_name(self) -> str:
        return self.name.split("-")[0]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_workers_are_replaced_by_lifetime_and_memory_without_failed_requests(start_server) -> None:
    overrides = {
        "granian-lifetime": [f"server.worker_max_lifetime={GRANIAN_LIFETIME}"],
        "uvicorn-lifetime": [f"server.worker_max_lifetime={OUR_LIFETIME}"],
        "hypercorn-lifetime": [f"server.worker_max_lifetime={OUR_LIFETIME}"],
        # 1 MiB: every worker is over it at every check, so each check replaces one.
        "granian-memory": ["server.worker_max_rss_mib=1", "server.worker_rss_check_interval=3"],
        "uvicorn-memory": ["server.worker_max_rss_mib=1", "server.worker_rss_check_interval=3"],
        "hypercorn-memory": ["server.worker_max_rss_mib=1", "server.worker_rss_check_interval=3"],
    }
    watches = []
    for name, keys in overrides.items():
        server = start_server(f"server={name.split('-')[0]}", "server.workers=2", *keys, ready_path="/loop")
        watches.append(Watch(name, server))
        if name == "granian-lifetime":
            granian_started = time.monotonic()
    stop = threading.Event()
    threads = [threading.Thread(target=w.load, args=(stop,), daemon=True) for w in watches]
    for thread in threads:
        thread.start()
    # granian checks lifetimes once a minute, then replaces its two workers one after the other.
    deadline = granian_started + GRANIAN_LIFETIME + 30
    while time.monotonic() < deadline and watches[0].server.log().count("Stopped old worker") < 2:
        for watch in watches:
            watch.read_log()
        time.sleep(0.1)
    time.sleep(0.5)  # the last replacement answers a few requests
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    for watch in watches:
        watch.read_log()
        watch.server.process.send_signal(signal.SIGTERM)
    exit_codes = {w.name: w.server.stop() for w in watches}

    for watch in watches:
        context = f"{watch.name}: {watch.requests} requests, replacements {watch.replacements}\n{watch.server.log()}"
        assert watch.failures == [], context
        assert watch.requests > 200, context
        assert exit_codes[watch.name] == 0, context
        # Workers were replaced: two at least, each a different worker, and new pids answered.
        assert len(watch.replacements) >= 2, context
        assert len({who for _, who, _ in watch.replacements}) >= 2, context
        assert len(watch.pids) >= 3, context
        # Never together: one replacement at a time, apart in time.
        times = [when for when, _, _ in watch.replacements]
        gaps = [later - earlier for earlier, later in pairwise(times)]
        minimum_gap = GRANIAN_RESPAWN_INTERVAL - 0.5 if watch.server_name == "granian" else 0.25
        assert min(gaps) >= minimum_gap, context
        if watch.name in ("uvicorn-lifetime", "hypercorn-lifetime"):
            # Each worker's lifetime is its own: worker_max_lifetime plus up to 10% jitter.
            lifetimes = [float(LIFETIME.search(why).group(1)) for _, _, why in watch.replacements]
            assert all(OUR_LIFETIME <= value <= OUR_LIFETIME * 1.1 + 0.05 for value in lifetimes), lifetimes
            assert len(set(lifetimes)) >= 2, lifetimes
        if watch.name == "granian-lifetime":
            assert "lifetime expired" in watch.server.log(), context
        if watch.name.endswith("-memory") and watch.server_name != "granian":
            assert "over server.worker_max_rss_mib=1" in watch.server.log(), context


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["server=granian", "server.worker_max_lifetime=30"], ["server.worker_max_lifetime", "at least 60 s"]),
        (["server=uvicorn", "server.worker_max_lifetime=0"], ["server.worker_max_lifetime", "1..86400"]),
        (["server=hypercorn", "server.worker_max_rss_mib=-5"], ["server.worker_max_rss_mib", "null (no limit)"]),
        (["server=uvicorn", "server.worker_max_rss_mib=lots"], ["server.worker_max_rss_mib", "lots"]),
        (["server=uvicorn", "server.worker_rss_check_interval=0"], ["server.worker_rss_check_interval", "1..86400"]),
        (["server=uvicorn", "server.reload=true", "server.worker_max_lifetime=60"], ["server.worker_max_lifetime"]),
    ],
)
def test_bad_recycling_values_are_one_line(overrides: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli(*overrides), *fragments)
