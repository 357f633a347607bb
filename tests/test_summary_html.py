"""summary.html: written by the sweep summary from bench.json files, then loaded in headless Chromium and
driven over the DevTools protocol (real clicks on the headers, the DOM and the SVG read back)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, RejectConnection, Request

from pyfly_hydra.bench.report.summary import load_records
from pyfly_hydra.bench.report.sweep import write_summary
from tests.conftest import missing

CHROMIUM = shutil.which("chromium")
BROWSER_SECONDS = 60  # the whole browser session, start to kill
TRICKY = "server=granian server.root_path='/a<b>&\"c\"' app=x:<script>alert(1)</script>"
GRANIAN, UVICORN, ASYNCIO, FAILED = (
    "server=granian loop=uvloop", "server=uvicorn loop=uvloop", "server=uvicorn loop=asyncio", "server=hypercorn",
)  # fmt: skip
LABELS = [GRANIAN, UVICORN, ASYNCIO, TRICKY, FAILED]
# What a job that failed records: how it was run, then its status and reason (no figures).
DESCRIBED = {
    "job", "label", "round", "bench_overrides", "overrides", "server", "server_version", "loop", "workers", "http",
    "tls", "app", "choices", "server_config", "app_factory", "metric", "started", "machine",
}  # fmt: skip


def record(job: int, label: str, round_: int, rps: float, **changes) -> dict:
    """A bench.json as a real sweep job writes it (the shape of a `-m mode=bench` run's record)."""
    server = "uvicorn" if "uvicorn" in label else "hypercorn" if "hypercorn" in label else "granian"
    loop = "asyncio" if "asyncio" in label else "uvloop"
    return {
        "job": job, "label": label, "round": round_, "bench_overrides": ["bench.duration=1", "bench.warmup=0"],
        "overrides": label.split(), "server": server, "server_version": {"granian": "2.8.7"}.get(server, "0.54.0"),
        "loop": loop, "workers": 1, "http": "auto", "tls": False, "app": "pyfly_hydra.demo:app",
        "choices": {"server": server, "loop": loop, "env": None},
        "server_config": {"host": "127.0.0.1", "port": 8000, "workers": 1, "backlog": 1024},
        "app_factory": False, "metric": "rps", "started": "2026-11-24T21:15:23+0000",
        "machine": {"cpu": "AMD EPYC", "cpus": "2", "os": "Linux x86_64", "python": "3.11.7"},
        "status": "ok", "reason": None, "client": "wrk", "workload": "plaintext", "connections": 64,
        "duration": 1.01, "requests": int(rps), "errors": 0, "rps": rps, "p50_ms": 1.63, "p90_ms": 3.92,
        "p99_ms": 7.16, "p999_ms": None, "max_ms": None, "rate": None, "late_sends": None,
        "server_cpu_percent": 83.9, "server_peak_rss_mib": 80.8, "server_cpus": [0, 1], "client_cpus": None,
        "client_cpu_cores": 0.25, "client_threads": 1, "client_saturated": False, "server_exit_code": 0,
        "kinds": {"plaintext": {"requests": int(rps), "errors": 0, "p50_ms": 1.63, "p99_ms": 7.16}},
    } | changes  # fmt: skip


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    """Three interleaved rounds of three configurations, one round of the tricky label, a failed job, and a
    configuration whose server CPU could not be read (NaN) and peak RSS is missing."""
    rounds = {
        GRANIAN: [24_000.0, 23_500.0, 24_500.0],
        UVICORN: [18_000.0, 18_500.0, 17_800.0],
        ASYNCIO: [15_000.0, 15_500.0, 14_800.0],
    }
    records = []
    for round_ in (1, 2, 3):
        for label, values in rounds.items():
            nan = {"server_cpu_percent": math.nan, "server_peak_rss_mib": None} if label == ASYNCIO else {}
            records.append(record(len(records), label, round_, values[round_ - 1], **nan))
        if round_ == 1:
            records.append(record(len(records), TRICKY, 1, 20_000.0, server_cpu_percent=95.0))
            described = {k: v for k, v in record(len(records), FAILED, 1, 0).items() if k in DESCRIBED}
            reason = "hypercorn is not installed: pip install 'x[hypercorn]' <here>"
            records.append(described | {"server_version": None, "status": "failed", "reason": reason})
    sweep = tmp_path / "sweep"
    for each in records:
        (sweep / str(each["job"])).mkdir(parents=True)
        (sweep / str(each["job"]) / "bench.json").write_text(json.dumps(each, indent=2) + "\n")
    return sweep


def test_summary_html_is_written_self_contained_and_escaped(sweep_dir: Path) -> None:
    written = write_summary(sweep_dir, load_records(sweep_dir))
    assert sweep_dir / "summary.html" in written
    page = (sweep_dir / "summary.html").read_text()
    assert TRICKY not in page and "<script>alert" not in page
    assert "server.root_path=&#x27;/a&lt;b&gt;&amp;&quot;c&quot;&#x27;" in page
    assert page.count("<script") == 1 and "src=" not in page and "href=" not in page and "@import" not in page
    assert re.findall(r"\w+://[^\s\"'<]*", page) == ["http://www.w3.org/2000/svg"]  # the SVG namespace, no URL
    assert "failed (job 4): hypercorn is not installed" in page
    # The page needs no matplotlib: the module does not import it.
    check = "import sys, pyfly_hydra.bench.report.html; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def test_the_summaries_name_the_machines_the_jobs_ran_on(sweep_dir: Path) -> None:
    """The records' own fingerprints, not the machine writing the summary (after a Ray sweep, the driver)."""
    write_summary(sweep_dir, load_records(sweep_dir))
    one = "Measured on AMD EPYC (2 usable CPUs), Linux x86_64, Python 3.11.7."
    assert one in (sweep_dir / "summary.md").read_text() and one in (sweep_dir / "summary.html").read_text()
    node = sweep_dir / "1" / "bench.json"
    moved = json.loads(node.read_text())
    moved["machine"] = moved["machine"] | {"cpu": "Ampere Altra", "cpus": "64", "os": "Linux aarch64"}
    node.write_text(json.dumps(moved))
    write_summary(sweep_dir, load_records(sweep_dir))
    two = (
        "Measured on 2 different machines (AMD EPYC (2 usable CPUs), Linux x86_64, Python 3.11.7; Ampere Altra"
        " (64 usable CPUs), Linux aarch64, Python 3.11.7): the ranking compares the machines as well as the"
        " configurations."
    )
    assert two in (sweep_dir / "summary.md").read_text()
    assert two in (sweep_dir / "summary.html").read_text()


def test_a_sweep_with_a_users_own_server_is_summarised(tmp_path: Path) -> None:
    """A user's own server adapter (`--config-dir ... server=mine`) is a row like any other, in every file."""
    for job, (label, server) in enumerate([("server=mine", "mine"), (GRANIAN, "granian")]):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "bench.json").write_text(json.dumps(record(job, label, 1, 1000.0 + job, server=server)))
    written = {path.name for path in write_summary(tmp_path, load_records(tmp_path))}
    assert {"summary.csv", "summary.md", "summary.html", "summary.png", "best.yaml"} <= written
    summary = (tmp_path / "summary.md").read_text()
    assert "| mine " in summary and "`server=mine`" in summary, summary


class DevTools:
    """One Chrome DevTools Protocol session: JSON messages over a websocket (wsproto on a plain socket)."""

    def __init__(self, url: str, deadline: float) -> None:
        self.deadline = deadline
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
        self.connection = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.connection.send(Request(host=parts.netloc, target=parts.path)))
        self.accepted = False
        self.messages: list[dict] = []
        self.events: list[dict] = []
        self.next_id = 0
        self.partial = ""
        while not self.accepted:
            self._pump()

    def _pump(self) -> None:
        """Read what the browser sent; complete messages go to ``self.messages``."""
        if time.monotonic() > self.deadline:
            raise TimeoutError("the browser session took longer than its deadline")
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the browser closed the DevTools connection")
        self.connection.receive_data(data)
        for event in self.connection.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection | CloseConnection):
                raise ConnectionError(f"DevTools websocket: {event}")
            elif isinstance(event, Ping):
                self.sock.sendall(self.connection.send(event.response()))
            elif isinstance(event, Message):
                self.partial += event.data
                if event.message_finished:
                    self.messages.append(json.loads(self.partial))
                    self.partial = ""

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept in ``self.events``."""
        self.next_id += 1
        message = json.dumps({"id": self.next_id, "method": method, "params": params})
        self.sock.sendall(self.connection.send(Message(data=message)))
        while True:
            while self.messages:
                reply = self.messages.pop(0)
                if reply.get("id") == self.next_id:
                    assert "error" not in reply, reply
                    return reply["result"]
                self.events.append(reply)
            self._pump()

    def wait_for(self, method: str) -> dict:
        """The first event named ``method`` (waiting for it)."""
        while True:
            self.events += [m for m in self.messages if "id" not in m]
            self.messages = [m for m in self.messages if "id" in m]
            for event in self.events:
                if event["method"] == method:
                    return event["params"]
            self._pump()

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page (an exception in it fails the test)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed, released) in the middle of the element ``selector`` names."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center', inline: 'center'});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def stop_group(process: subprocess.Popen) -> None:
    """End the browser this test started: its process group (its own session), TERM then KILL, bounded."""
    for sig, seconds in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=seconds)
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # the group's other processes (renderers, zygote) too
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium on about:blank, and a DevTools session on its page."""
    if CHROMIUM is None:
        missing("chromium is not installed (apt-get install chromium): summary.html is not checked in a browser")
    profile = tmp_path / "chromium-profile"
    log = (tmp_path / "chromium.log").open("w")
    deadline = time.monotonic() + BROWSER_SECONDS
    process = subprocess.Popen(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", "--window-size=1400,900", "about:blank",
        ],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    session = None
    try:
        port_file = profile / "DevToolsActivePort"
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert process.poll() is None, (tmp_path / "chromium.log").read_text()
            assert time.monotonic() < deadline, "chromium did not write DevToolsActivePort"
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        session = DevTools(page["webSocketDebuggerUrl"], deadline)
        yield session
    finally:
        if session is not None:
            session.close()
        stop_group(process)
        log.close()


def open_page(devtools: DevTools, path: Path) -> None:
    for domain in ("Page", "Runtime", "Network", "Log"):
        devtools.call(f"{domain}.enable")
    devtools.call("Page.navigate", url=path.as_uri())
    devtools.wait_for("Page.loadEventFired")


def column(devtools: DevTools, header: str) -> list[str]:
    """The cells of the column ``header``, top to bottom: a number's data-value, else the text."""
    return devtools.evaluate(
        f"(() => {{ const i = Array.from(document.querySelectorAll('thead th'))"
        f".findIndex((th) => th.textContent.trim() === {json.dumps(header)});"
        " return Array.from(document.querySelectorAll('tbody tr'), (row) => row.cells[i])"
        ".map((cell) => cell.dataset.value ?? cell.textContent.trim()); })()"
    )


def sort_by(devtools: DevTools, header: str) -> str:
    """Click the header ``header``; return its aria-sort, after checking no other header has one."""
    index = devtools.evaluate(
        f"Array.from(document.querySelectorAll('thead th')).findIndex((th) => th.textContent.trim() === "
        f"{json.dumps(header)}) + 1"
    )
    devtools.click(f"thead th:nth-child({index}) button")
    sorted_by = devtools.evaluate(
        "Array.from(document.querySelectorAll('thead th[aria-sort]'), (th) => th.textContent.trim())"
    )
    assert sorted_by == [header], sorted_by
    return devtools.evaluate(f"document.querySelector('thead th:nth-child({index})').getAttribute('aria-sort')")


def numbers_sorted(values: list[str], *, descending: bool) -> None:
    present = [float(v) for v in values if v != ""]
    assert present == sorted(present, reverse=descending), values
    assert values[len(present) :] == [""] * (len(values) - len(present)), values  # empty and NaN last


def test_summary_html_in_a_headless_browser(sweep_dir: Path, browser: DevTools) -> None:
    write_summary(sweep_dir, load_records(sweep_dir))
    open_page(browser, sweep_dir / "summary.html")

    # Every configuration is a row, in rank order; the tricky label is text, exactly as typed.
    assert column(browser, "configuration") == [GRANIAN, TRICKY, UVICORN, ASYNCIO, FAILED]
    assert column(browser, "#") == ["1", "2", "3", "4", "5"]
    assert browser.evaluate("document.querySelectorAll('tbody script, tbody td.label *').length") == 0
    assert browser.evaluate("document.querySelector('thead th[aria-sort]').textContent.trim()") == "#"
    status = column(browser, "status")
    assert status[:4] == ["ok"] * 4, status
    assert status[4] == "failed (job 4): hypercorn is not installed: pip install 'x[hypercorn]' <here>"
    assert column(browser, "n") == ["3", "1", "3", "3", "0"]
    assert column(browser, "server CPU %")[3] == ""  # NaN: no number to sort by
    assert browser.evaluate("document.querySelector('tbody tr:nth-child(4) td:nth-child(14)').textContent") == "-"

    # A numeric header sorts by the numbers (the failed row's empty one last), again reverses.
    assert sort_by(browser, "rps") == "ascending"
    numbers_sorted(column(browser, "rps"), descending=False)
    assert column(browser, "configuration") == [ASYNCIO, UVICORN, TRICKY, GRANIAN, FAILED]
    assert sort_by(browser, "rps") == "descending"
    numbers_sorted(column(browser, "rps"), descending=True)
    assert column(browser, "configuration")[:4] == [GRANIAN, TRICKY, UVICORN, ASYNCIO]
    # NaN and missing sort last both ways.
    for direction in ("ascending", "descending"):
        assert sort_by(browser, "server CPU %") == direction
        cpu = column(browser, "server CPU %")
        numbers_sorted(cpu, descending=direction == "descending")
        assert cpu.count("") == 2 and column(browser, "configuration")[3:] == [ASYNCIO, FAILED], cpu

    # A text header sorts alphabetically, again reverses.
    assert sort_by(browser, "configuration") == "ascending"
    labels = column(browser, "configuration")
    assert sorted(labels) == sorted(LABELS) and labels != LABELS
    assert browser.evaluate(
        "(() => { const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});"
        f" const labels = {json.dumps(labels)};"
        " return labels.every((label, i) => i === 0 || collator.compare(labels[i - 1], label) <= 0); })()"
    ), labels
    assert sort_by(browser, "configuration") == "descending"
    assert column(browser, "configuration") == list(reversed(labels))

    # The chart: a row per configuration, a bar per measured one (length proportional to its median),
    # whiskers on the three-round ones, the failed one's reason.
    assert browser.evaluate("document.querySelectorAll('svg g.row').length") == len(LABELS)
    bars = browser.evaluate(
        "Array.from(document.querySelectorAll('svg rect.bar'), (bar) =>"
        " [bar.closest('g.row').dataset.label, parseFloat(bar.dataset.value), bar.getBBox().width])"
    )
    assert [label for label, _, _ in bars] == [GRANIAN, TRICKY, UVICORN, ASYNCIO]
    assert [median for _, median, _ in bars] == [24_000.0, 20_000.0, 18_000.0, 15_000.0]
    scales = [width / median for _, median, width in bars]
    assert max(scales) / min(scales) < 1.01, bars
    assert browser.evaluate("document.querySelectorAll('svg path.whisker').length") == 3
    assert "failed: hypercorn is not installed" in browser.evaluate(
        "document.querySelector('svg g.row:last-of-type text.failed').textContent"
    )
    assert browser.evaluate("document.querySelector('svg g.row:nth-of-type(2) text').textContent").endswith(
        "\u2026"
    )  # a long label is cut, its whole text in a <title>

    # Nothing went wrong and nothing was fetched but the page itself.
    errors = [e for e in browser.events if e["method"] == "Runtime.exceptionThrown"]
    errors += [
        e for e in browser.events if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
    ]
    assert errors == [], errors
    requests = {e["params"]["request"]["url"] for e in browser.events if e["method"] == "Network.requestWillBeSent"}
    assert requests == {(sweep_dir / "summary.html").as_uri()}, requests
