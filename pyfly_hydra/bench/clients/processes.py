"""The builtin client in several processes: one Python thread feeds about one core's worth of load.

The run's connections are split between the processes (and, open loop, its rate in the same shares, so every
connection keeps the schedule it would have had in one process); each process is pinned to one CPU of
``bench.client_cpus`` when given, measures its part on its own event loop, and sends back what it measured
whole (every closed-loop latency, the open loop's HDR histograms), so the merged percentiles are those of every
response. The processes start their load together: each says it is ready (interpreter up, modules imported),
then all are told to go.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from pyfly_hydra.bench.clients.base import LoadSpec
from pyfly_hydra.bench.clients.external import LoadError

if TYPE_CHECKING:
    from pyfly_hydra.bench.clients.builtin import ClosedLoopPart
    from pyfly_hydra.bench.clients.open_loop import OpenLoopPart

READY, GO = "ready", "go"
READY_SECONDS = 60.0  # for every process to start and import what it needs
RESULT_MARGIN_SECONDS = 30.0  # beyond the run's duration and timeout, for a process to send what it measured


def split(spec: LoadSpec, processes: int) -> list[LoadSpec]:
    """``spec`` in ``processes`` parts (no more than its connections): the connections as even as they go, and
    the rate and the request cap in the same shares."""
    count = min(processes, spec.connections)
    shares = [spec.connections // count + (index < spec.connections % count) for index in range(count)]
    parts = []
    for share in shares:
        fraction = share / spec.connections
        rate = spec.rate * fraction if spec.rate is not None else None
        requests = max(1, round(spec.requests * fraction)) if spec.requests is not None else None
        parts.append(replace(spec, connections=share, threads=1, rate=rate, requests=requests))
    return parts


def measure_in_processes(
    spec: LoadSpec, *, processes: int, cpus: frozenset[int] | None, timeout: float
) -> list[ClosedLoopPart] | list[OpenLoopPart]:
    """Run ``spec`` split over ``processes`` processes started together; what each measured."""
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no threads or loop of the caller's
    pinned_to = sorted(cpus) if cpus else [None]
    children = []
    for index, part in enumerate(split(spec, processes)):
        ours, theirs = context.Pipe()
        cpu = pinned_to[index % len(pinned_to)]
        process = context.Process(target=_measure_part, args=(theirs, part, cpu, timeout), daemon=True)
        process.start()
        theirs.close()
        children.append((process, ours))
    try:
        for process, connection in children:
            _expect(connection, process, READY, READY_SECONDS)
        for _, connection in children:
            connection.send(GO)
        waiting = spec.duration + timeout + RESULT_MARGIN_SECONDS
        return [_expect(connection, process, None, waiting) for process, connection in children]
    finally:
        for process, connection in children:
            connection.close()
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()


def _expect(connection: Connection, process: BaseProcess, word: str | None, seconds: float) -> Any:
    """The next message of a client process (``word``, or its part when None); a clear error when it failed."""
    if not connection.poll(seconds):
        raise LoadError(f"a builtin client process sent nothing within {seconds:g} s (pid {process.pid})")
    try:
        message = connection.recv()
    except EOFError:
        raise LoadError(f"a builtin client process ended (exit {process.exitcode}) before sending its part") from None
    if isinstance(message, tuple) and message[:1] == ("failed",):
        raise LoadError(f"a builtin client process failed: {message[1]}")
    if word is not None and message != word:
        raise LoadError(f"a builtin client process said {message!r} instead of {word!r}")
    return message


def _measure_part(connection: Connection, spec: LoadSpec, cpu: int | None, timeout: float) -> None:
    """A client process: pin itself, say it is ready, wait for go, measure its part, send it back."""
    from pyfly_hydra.bench.clients.builtin import BuiltinClient

    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        client = BuiltinClient(timeout)
        connection.send(READY)
        if connection.recv() != GO:
            return
        connection.send(client.measure(spec))
    except Exception as error:  # said to the parent, which fails the run with it
        connection.send(("failed", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()
