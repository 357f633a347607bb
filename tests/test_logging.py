"""One log format for the runner, the server, its workers and the access log, on every server."""

from __future__ import annotations

import http.client
import json
import re

import httpx
import pytest

from tests.conftest import SERVERS

HYDRA_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[[\w.]+\]\[[A-Z]+\] - ")
SERVER_LOGGER = {"granian": "_granian", "uvicorn": "uvicorn.error", "hypercorn": "hypercorn.error"}
CASES = [(server, "json", workers) for server in SERVERS for workers in (1, 2)] + [
    (server, "text", 2) for server in SERVERS
]


def _requests(url: str) -> None:
    with httpx.Client() as client:
        assert client.get(url + "/json?a=1").status_code == 200
        assert client.get(url + "/missing").status_code == 404
        assert client.post(url + "/upload", content=b"x" * 1000).status_code == 200


@pytest.mark.parametrize(("server", "log", "workers"), CASES)
def test_every_line_has_the_chosen_format(start_server, server: str, log: str, workers: int) -> None:
    running = start_server(f"server={server}", f"log={log}", f"server.workers={workers}", "server.access_log=true")
    _requests(running.url)
    assert running.stop() == 0
    lines = [line for line in running.log().splitlines() if line.strip()]
    access = [line for line in lines if "pyfly_hydra.access" in line]
    # One access line per request, no doubles (the readiness probe's /health requests are there too).
    assert sum("/json?a=1" in line for line in access) == 1, lines
    assert sum("/missing" in line for line in access) == 1, lines
    if log == "text":
        assert all(HYDRA_LINE.match(line) for line in lines), [line for line in lines if not HYDRA_LINE.match(line)]
        assert any('"GET /json?a=1 HTTP/1.1" 200' in line for line in access), access
        assert any(f"[{SERVER_LOGGER[server]}]" in line for line in lines), lines
        return
    entries = [json.loads(line) for line in lines]  # every line, the server's and the workers' too
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries), entries
    assert {entry["logger"] for entry in entries} >= {"pyfly_hydra", SERVER_LOGGER[server]}, entries
    requests = {entry["path"]: entry for entry in entries if entry["logger"] == "pyfly_hydra.access"}
    assert requests["/json?a=1"]["method"] == "GET" and requests["/json?a=1"]["status"] == 200, requests
    assert requests["/missing"]["status"] == 404, requests
    assert requests["/upload"]["method"] == "POST", requests
    assert all(isinstance(entry["duration_ms"], float) for entry in requests.values()), requests
    # The run record holds the same lines, the workers' included.
    record = (running.run_dir / "pyfly_hydra.log").read_text()
    assert '"path": "/json?a=1"' in record


# A path that, percent-decoded by the server, would end the line and write a second, well-formed one.
FORGED_LINE = "[2026-12-02 10:00:00,000][pyfly_hydra.access][INFO] - 10.0.0.99:4444 - %22POST /admin HTTP/1.1%22 200"
HOSTILE_PATH = "/%0d%0a" + FORGED_LINE.replace(" ", "%20") + "%1b[31m%5c%e2%80%a8%c2%85end"


@pytest.mark.parametrize("log", ["text", "json"])
@pytest.mark.parametrize("server", SERVERS)
def test_a_hostile_path_is_one_escaped_access_line(start_server, server: str, log: str) -> None:
    running = start_server(f"server={server}", f"log={log}", "server.access_log=true")
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    connection.request("GET", HOSTILE_PATH)
    assert connection.getresponse().status == 404
    connection.close()
    assert running.stop() == 0
    lines = running.log().splitlines()  # splitlines() breaks at U+2028 and U+0085 too
    assert not any(line.startswith("[2026-12-02 10:00:00,000]") or "\x1b" in line for line in lines), lines
    hostile = [line for line in lines if "pyfly_hydra.access" in line and "admin" in line]
    assert len(hostile) == 1, lines
    escaped = '/\\x0d\\x0a[2026-12-02 10:00:00,000][pyfly_hydra.access][INFO] - 10.0.0.99:4444 - \\"POST /admin'
    text = hostile[0] if log == "text" else json.loads(hostile[0])["path"]
    assert escaped in text and "\\x1b[31m\\\\\\u2028\\x85end" in text, text
