"""``mode=bench``: serve the configured app in a child, drive load at it, and write ``bench.json``."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pyfly_hydra.bench.capacity import LIMITS, Capacity, find_capacity, step_passes
from pyfly_hydra.bench.clients.base import KindResult, LoadClient, LoadResult, LoadSpec
from pyfly_hydra.bench.clients.builtin import BuiltinClient
from pyfly_hydra.bench.clients.registry import check_protocol, select_client
from pyfly_hydra.bench.metrics import METRICS
from pyfly_hydra.bench.outcome import BenchOutcome, write_record
from pyfly_hydra.bench.probe import http1_answers, http2_answers
from pyfly_hydra.bench.process import ServerProcess, Usage, UsageSampler, free_port, parse_cpus, pinned
from pyfly_hydra.bench.progress import Progress
from pyfly_hydra.bench.rounds import sweep_rounds
from pyfly_hydra.bench.workload import Workload, path_workload, workload_from_config
from pyfly_hydra.config.environment import without_configuration
from pyfly_hydra.config.messages import describe
from pyfly_hydra.config.schema import SCHEMA_NAME
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.runner.machine import fingerprint
from pyfly_hydra.runner.serve import Plan, make_plan

logger = logging.getLogger("pyfly_hydra")

STOP_MARGIN_SECONDS = 10.0
DEFAULT_WORKLOAD = "plaintext"  # conf/config.yaml's bench/workload default
# Overrides that configure the benchmark itself rather than the server it measures.
NOT_SERVER_KEYS = ("mode", "sweep=", "bench.", "hydra.", "server.port", "server.host")
ROUND_KEYS = ("bench.round=", "bench.rounds=")  # the same configuration measured again, not another one
HYDRA_ESCAPE = re.compile(r"\\([\\()\[\]{}:=, ])")  # what Hydra's sweeper escapes in a value


@dataclass(frozen=True)
class BenchSettings:
    """``bench.*``, checked."""

    duration: float
    warmup: float
    connections: int
    threads: int
    workload: Workload
    requests: int | None
    rate: float | None
    slo_p99_ms: float | None
    capacity_step: float
    capacity_budget: float
    client: str
    metric: str
    server_cpus: frozenset[int] | None
    client_cpus: frozenset[int] | None
    client_processes: int | None  # None: one per CPU of client_cpus (the builtin client), else its own threads
    ready_timeout: float


def bench_settings(node: DictConfig) -> BenchSettings:
    """Validate ``bench.*`` and return it typed."""
    if node.duration <= 0:
        raise ConfigError("bench.duration", node.duration, "must be a number of seconds > 0")
    if node.warmup < 0:
        raise ConfigError("bench.warmup", node.warmup, "must be a number of seconds >= 0")
    for key in ("connections", "threads"):
        if node[key] < 1:
            raise ConfigError(f"bench.{key}", node[key], "must be an integer >= 1")
    if node.requests is not None and node.requests < 1:
        raise ConfigError("bench.requests", node.requests, "must be an integer >= 1 or null (no cap)")
    if node.rate is not None and not node.rate > 0:
        raise ConfigError("bench.rate", node.rate, "must be requests per second > 0, or null (closed loop)")
    if node.metric not in METRICS:
        raise ConfigError("bench.metric", node.metric, f"must be one of {', '.join(METRICS)}")
    _check_capacity(node)
    for key in ("rate", "slo_p99_ms"):
        if node[key] is not None and importlib.util.find_spec("hdrh") is None:
            hint = "open loop needs hdrhistogram: pip install 'pyfly-hydra[bench]'"
            raise ConfigError(f"bench.{key}", node[key], hint)
    sweep_rounds(node.rounds)  # checks bench.rounds
    if node.ready_timeout <= 0:
        raise ConfigError("bench.ready_timeout", node.ready_timeout, "must be a number of seconds > 0")
    processes = node.client_processes
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        raise ConfigError("bench.client_processes", processes, "must be an integer >= 1, or null (one per client CPU)")
    if processes is not None and processes > 1 and node.client not in ("auto", "builtin"):
        allowed = f"only the builtin client runs in processes; {node.client} has bench.threads"
        raise ConfigError("bench.client_processes", processes, allowed)
    return BenchSettings(
        duration=float(node.duration),
        warmup=float(node.warmup),
        connections=int(node.connections),
        threads=int(node.threads),
        workload=_workload(node),
        requests=node.requests,
        rate=None if node.rate is None else float(node.rate),
        slo_p99_ms=None if node.slo_p99_ms is None else float(node.slo_p99_ms),
        capacity_step=float(node.capacity.step_seconds),
        capacity_budget=float(node.capacity.budget_seconds),
        client=str(node.client),
        metric=str(node.metric),
        server_cpus=parse_cpus("bench.server_cpus", node.server_cpus),
        client_cpus=parse_cpus("bench.client_cpus", node.client_cpus),
        client_processes=processes,
        ready_timeout=float(node.ready_timeout),
    )


def _check_capacity(node: DictConfig) -> None:
    """``bench.slo_p99_ms`` and ``bench.capacity.*`` (and ``bench.metric=capacity``, which needs them)."""
    slo = node.slo_p99_ms
    if slo is None:
        if node.metric == "capacity":
            raise ConfigError("bench.metric", "capacity", "needs a latency goal: set bench.slo_p99_ms, e.g. 50")
        return
    if not slo > 0:
        raise ConfigError("bench.slo_p99_ms", slo, "must be milliseconds > 0, or null (no capacity search)")
    for key, value in (("rate", node.rate), ("requests", node.requests)):
        if value is not None:
            raise ConfigError(f"bench.{key}", value, "the capacity search (bench.slo_p99_ms) sets its own; unset it")
    step, budget = node.capacity.step_seconds, node.capacity.budget_seconds
    if not step > 0:
        raise ConfigError("bench.capacity.step_seconds", step, "must be a number of seconds > 0")
    if not budget >= 3 * step:
        raise ConfigError("bench.capacity.budget_seconds", budget, f"must be at least 3 steps ({3 * step:g} s)")


def _workload(node: DictConfig) -> Workload:
    """``bench.path`` (one GET), else ``bench.workload`` (the ``bench/workload`` group)."""
    if node.path is None:
        return workload_from_config(node.workload)
    path = str(node.path)
    chosen = HydraConfig.get().runtime.choices.get("bench/workload") if HydraConfig.initialized() else None
    if chosen not in (None, DEFAULT_WORKLOAD):
        raise ConfigError("bench.path", path, f"set bench.path or bench/workload (here {chosen}), not both")
    return path_workload(path)


def job_overrides() -> list[str]:
    """This job's overrides that shape the server (not mode, bench.*, hydra.*, host or port)."""
    return [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(NOT_SERVER_KEYS)]


def serve_command(cfg: DictConfig, *, port: int, output_dir: Path) -> list[str]:
    """The child's command line: this job's composed config, resolved, served on 127.0.0.1:port."""
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    # Complete: the env file and the environment's overrides are in it already (the child reads neither again).
    resolved.update(mode="serve", env_file=None, defaults=[SCHEMA_NAME, "_self_"])
    config_dir = output_dir / "serve"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "serve.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    return [
        sys.executable,
        "-m",
        "pyfly_hydra",
        "--config-dir",
        str(config_dir),
        "--config-name",
        "serve",
        f"server.port={port}",
        "server.host=127.0.0.1",
        f"hydra.run.dir={output_dir / 'server'}",
    ]


def _load(client: LoadClient, spec: LoadSpec, progress: Progress | None = None) -> LoadResult:
    return client.run(spec, on_progress=progress.update if progress else None)


def _measure(cfg: DictConfig, plan: Plan, settings: BenchSettings, output_dir: Path) -> dict[str, Any]:
    workload = settings.workload
    http2, http3, capped = plan.info.http == "2", plan.info.http == "3", settings.requests is not None
    open_loop = settings.rate is not None or settings.slo_p99_ms is not None
    # bench.client_processes > 1 is the builtin client's: auto then picks it.
    name = "builtin" if settings.client == "auto" and (settings.client_processes or 1) > 1 else settings.client
    client = select_client(name, http2=http2, http3=http3, capped=capped, workload=workload, open_loop=open_loop)
    if isinstance(client, BuiltinClient):
        default = len(settings.client_cpus) if settings.client_cpus else 1
        client = BuiltinClient(processes=settings.client_processes or default, cpus=settings.client_cpus)
    if client.name == "wrk":
        for key, seconds in (("bench.duration", settings.duration), ("bench.warmup", settings.warmup)):
            if seconds != int(seconds):
                raise ConfigError(key, seconds, "wrk runs whole seconds; use an integer, or bench.client=builtin")
    cfg = _uncapped_for(client, plan, cfg)
    port = free_port()
    scheme = "https" if plan.info.tls else "http"
    # A client that takes one URL gets the workload's one path; the builtin client sends the workload.
    url = f"{scheme}://127.0.0.1:{port}{workload.kinds[0].path if workload.single_plain_get else '/'}"
    probe = http2_answers if plan.info.http == "2" else http1_answers
    server = ServerProcess(
        serve_command(cfg, port=port, output_dir=output_dir),
        log_path=output_dir / "server.log",
        cpus=settings.server_cpus,
        env=without_configuration(os.environ),
    )
    label = f"{plan.info.server}/{plan.info.loop} x{plan.info.workers}"
    capacity: Capacity | None = None
    try:
        server.wait_ready(lambda: probe(url), timeout=settings.ready_timeout)
        with pinned(settings.client_cpus):
            if settings.warmup > 0:
                _load(client, _spec(url, settings, duration=settings.warmup, requests=None))
            with UsageSampler(server.pid) as sampler:
                if settings.slo_p99_ms is None:
                    with Progress(label, settings.duration) as progress:
                        result = _load(client, _spec(url, settings), progress)
                else:
                    capacity, result = _search_capacity(client, url, settings, label)
        usage = sampler.usage()
        server.ensure_alive()
    finally:
        exit_code = server.stop(timeout=plan.server.properties.graceful_timeout + STOP_MARGIN_SECONDS)
    fields = _measured_fields(result, usage, settings, exit_code)
    if capacity is not None:
        fields.update(capacity=round(capacity.rate, 1), capacity_search=capacity.record())
    return fields


def _uncapped_for(client: LoadClient, plan: Plan, cfg: DictConfig) -> DictConfig:
    """``cfg``, with the server's own cap on requests per connection lifted when the client cannot
    reconnect: h2load's connections would end one by one at the cap, and the run would go on measuring
    a shrinking load (hypercorn over HTTP/2: 4,000 requests in 3 s, reported as a third of its rate).
    Reconnecting once per cap is what a browser does, and costs a real client next to nothing."""
    cap = plan.server.connection_request_cap()
    if cap is None or client.reconnects:
        return cfg
    option, requests = cap
    key = f"server.options.{plan.info.server}.{option}"
    if option in (plan.server.properties.options.get(plan.info.server) or {}):
        raise ConfigError(
            key, requests, f"{client.name} does not reconnect, so it cannot measure connections closed after"
            f" {requests} requests; leave it unset (the bench lifts {plan.info.server}'s default) or use HTTP/1.1",
        )  # fmt: skip
    logger.info(
        "bench: %s closes a connection after %d requests (%s) and %s does not reconnect: measured without that cap",
        plan.info.server, requests, option, client.name,
    )  # fmt: skip
    uncapped = cfg.copy()
    OmegaConf.update(uncapped, key, sys.maxsize, force_add=True)
    return uncapped


def _spec(
    url: str, settings: BenchSettings, *, duration: float | None = None, requests: int | None = None, **changes: Any
) -> LoadSpec:
    """The LoadSpec of ``bench.*``, with ``duration``/``rate`` changed where given."""
    spec = LoadSpec(
        url,
        settings.duration if duration is None else duration,
        settings.connections,
        settings.threads,
        settings.requests if duration is None else requests,
        workload=settings.workload,
        rate=settings.rate,
    )
    return replace(spec, **changes)


def _search_capacity(client: LoadClient, url: str, settings: BenchSettings, label: str) -> tuple[Capacity, LoadResult]:
    """Find the capacity under ``bench.slo_p99_ms``; return it and the run to report (its confirmation)."""
    step = settings.capacity_step
    probe = _load(client, _spec(url, settings, duration=step, rate=None))
    logger.info("capacity %s: closed-loop probe %s rps, p99 %.2f ms", label, f"{probe.rps:,.0f}", probe.p99_ms)
    last = probe

    def run_at(rate: float, seconds: float) -> LoadResult:
        nonlocal last
        last = _load(client, _spec(url, settings, duration=seconds, rate=rate))
        verdict = "meets" if step_passes(last, rate, cast(float, settings.slo_p99_ms)) else "misses"
        logger.info(
            "capacity %s: %s rps -> achieved %s, p99 %.2f ms, %d errors: %s the goal",
            label, f"{rate:,.0f}", f"{last.rps:,.0f}", last.p99_ms, last.errors, verdict,
        )  # fmt: skip
        return last

    capacity = find_capacity(
        run_at,
        probe_rps=probe.rps,
        connections=settings.connections,
        slo_p99_ms=cast(float, settings.slo_p99_ms),
        step_seconds=step,
        budget_seconds=settings.capacity_budget,
    )
    logger.info(
        "capacity %s: %s rps within p99 %g ms (%s)",
        label, f"{capacity.rate:,.0f}", settings.slo_p99_ms, LIMITS[capacity.limit],
    )  # fmt: skip
    return capacity, capacity.confirmed or last


def _measured_fields(result: LoadResult, usage: Usage, settings: BenchSettings, exit_code: int) -> dict[str, Any]:
    return {
        "client": result.client,
        "workload": settings.workload.name,
        "connections": settings.connections,
        "duration": round(result.duration, 3),
        "requests": result.requests,
        "errors": result.errors,
        "rps": round(result.rps, 1),
        "p50_ms": round(result.p50_ms, 3),
        "p90_ms": round(result.p90_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "p999_ms": _rounded(result.p999_ms),
        "max_ms": _rounded(result.max_ms),
        "rate": result.rate,  # open loop: the intended requests/s; null: closed loop
        "late_sends": result.late_sends,
        "server_cpu_percent": round(usage.cpu_percent, 1),
        "server_peak_rss_mib": round(usage.peak_rss_mib, 1),
        "server_cpus": list(usage.cpus),
        "client_cpus": sorted(settings.client_cpus) if settings.client_cpus else None,
        "client_cpu_cores": round(result.client_cpu, 2),
        "client_waited_cores": round(result.client_waited, 2),  # runnable, but another process held the CPU
        "client_threads": result.client_threads,  # the builtin client in several processes: one per process
        "client_process_cores": [round(load, 2) for load in result.process_loads] or None,  # each, used or waited
        "client_saturated": result.saturated,
        "server_exit_code": exit_code,
        "kinds": {
            kind.name: {
                "requests": kind.requests,
                "errors": kind.errors,
                "p50_ms": _rounded(kind.p50_ms),
                "p99_ms": _rounded(kind.p99_ms),
            }
            for kind in _kinds(result, settings.workload)
        },
    }


def _rounded(milliseconds: float) -> float | None:
    """A latency for bench.json: 3 decimals, or null when the client does not report it."""
    return None if math.isnan(milliseconds) else round(milliseconds, 3)


def _kinds(result: LoadResult, workload: Workload) -> tuple[KindResult, ...]:
    """Per request kind: as the client measured it, or for a one-kind workload, the whole run."""
    if result.kinds or len(workload.kinds) != 1:
        return result.kinds
    return (KindResult(workload.kinds[0].name, result.requests, result.errors, result.p50_ms, result.p99_ms),)


def _describe_run(cfg: DictConfig, plan: Plan | None, started: float) -> dict[str, Any]:
    choices = HydraConfig.get().runtime.choices
    server_config = OmegaConf.to_container(cfg.server, resolve=False)
    overrides, task = job_overrides(), HydraConfig.get().overrides.task
    return {
        "job": HydraConfig.get().job.get("num"),
        "label": " ".join(_as_typed(o) for o in overrides) or "(defaults)",
        "round": cfg.bench.round,
        "bench_overrides": [_as_typed(o) for o in task if o.startswith("bench.") and not o.startswith(ROUND_KEYS)],
        "overrides": overrides,
        "server": plan.info.server if plan else choices.get("server"),
        "server_version": plan.info.version if plan else None,
        "loop": plan.info.loop if plan else choices.get("loop"),
        "workers": plan.info.workers if plan else cfg.server.workers,
        "http": plan.info.http if plan else cfg.server.http,
        "tls": plan.info.tls if plan else cfg.server.ssl_certfile is not None,
        "app": cfg.app,
        "choices": {"server": choices.get("server"), "loop": choices.get("loop"), "env": choices.get("env")},
        "server_config": {k: v for k, v in server_config.items() if k != "_target_"},  # type: ignore[union-attr]
        "app_factory": cfg.app_factory,
        "metric": cfg.bench.metric,
        "started": round(started, 3),  # epoch seconds; with "finished", the job's wall-clock window
        "machine": fingerprint(),
    }


def _as_typed(override: str) -> str:
    """An override as the user typed it: a sweep hands each job its value with Hydra's escapes (``a\\:b``)."""
    return HYDRA_ESCAPE.sub(r"\1", override)


def _log_result(record: dict[str, Any]) -> None:
    logger.info(
        "bench %s/%s x%s: %s rps, p50 %.2f ms, p99 %.2f ms, %d errors (%s, %g s, %d connections);"
        " server CPU %.0f%%, peak RSS %.0f MiB",
        record["server"],
        record["loop"],
        record["workers"],
        f"{record['rps']:,.0f}",
        record["p50_ms"],
        record["p99_ms"],
        record["errors"],
        record["client"],
        record["duration"],
        record["connections"],
        record["server_cpu_percent"],
        record["server_peak_rss_mib"],
    )
    if record["client_saturated"]:
        logger.warning(
            "the load client used %.2f CPU cores of its %d thread(s) and waited %.2f for a CPU another process"
            " held: it, not the server, may be the bottleneck; pin the two sides apart (bench.server_cpus,"
            " bench.client_cpus), quiet the machine, or use a faster client",
            record["client_cpu_cores"],
            record["client_threads"],
            record["client_waited_cores"],
        )


def run_bench(cfg: DictConfig, output_dir: Path) -> BenchOutcome:
    """Benchmark the configured server; write ``bench.json``; return ``bench.metric`` carrying the record.

    In a sweep (``-m``) a job that fails records its reason in ``bench.json`` and returns NaN, so the
    other jobs still run and the summary shows the failure; a single run fails with one clear line.
    """
    plan: Plan | None = None
    started = time.time()
    try:
        settings = bench_settings(cfg.bench)
        check_protocol(settings.client, http3=str(cfg.server.http) == "3")  # before the plan's notes: one line
        plan = make_plan(cfg)
        for key, listener in (("uds", plan.info.uds), ("fd", plan.info.fd)):
            if listener is not None:
                allowed = "mode=bench serves on a free 127.0.0.1 port; unset it to benchmark"
                raise ConfigError(f"server.{key}", listener, allowed)
        record = {**_describe_run(cfg, plan, started), "status": "ok", "reason": None}
        record.update(_measure(cfg, plan, settings, output_dir), finished=round(time.time(), 3))
    except Exception as error:
        reason, _ = describe(error)
        record = {**_describe_run(cfg, plan, started), "status": "failed", "reason": reason}
        record["finished"] = round(time.time(), 3)
        write_record(output_dir, record)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        logger.error("bench failed: %s", reason)
        return BenchOutcome(math.nan, record)
    write_record(output_dir, record)
    _log_result(record)
    return BenchOutcome(float(record[settings.metric]), record)
