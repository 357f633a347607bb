"""Each adapter's key table (``servers.keys``) is what the adapter does: in-process, no server started.

For every ``server.*`` key and every built-in server, the key is set alone (on top of what it needs, e.g.
``reload=true`` under ``reload_dirs``) and the server's own settings are compared with the defaults': the
options that change are exactly the ones its row names; the pyfly-hydra layer its row names is asked for;
a refused key is refused in one line naming it. The adapter passes no option its table does not declare.
"""

from __future__ import annotations

import pkgutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pyfly_hydra.config.properties import key_values
from pyfly_hydra.config.schema import GranianProperties, MetricsProperties, ServerProperties, WebsocketProperties
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.info import SERVER_ADAPTERS
from pyfly_hydra.loops.uvloop import UvloopLoop
from pyfly_hydra.ports import Serving
from pyfly_hydra.servers.base import ServerAdapter, constructor_keywords
from pyfly_hydra.servers.keys import LAYERS, option_names
from pyfly_hydra.supervision.reload import watched_sources
from pyfly_hydra.worker.apps import AppTarget

APP = AppTarget(import_string="pyfly_hydra.demo:app", factory=False, interface="asgi", directory=None)
LOOP = UvloopLoop()

# A value other than the default for every key, and what must be set with it for it to mean anything.
SAMPLES: dict[str, tuple[Any, dict[str, Any]]] = {
    "host": ("127.0.0.2", {}),
    "port": (8123, {}),
    "workers": (3, {}),
    "uds": ("/tmp/pyfly-hydra-keys.sock", {}),
    "uds_permissions": ("600", {"uds": "/tmp/pyfly-hydra-keys.sock"}),
    "uds_group": ("0", {"uds": "/tmp/pyfly-hydra-keys.sock"}),
    "fd": (3, {}),
    "backlog": (2048, {}),
    "graceful_timeout": (7, {}),
    "http": ("2", {}),
    "ssl_certfile": ("/tmp/cert.pem", {"ssl_keyfile": "/tmp/key.pem"}),
    "ssl_keyfile": ("/tmp/other-key.pem", {"ssl_certfile": "/tmp/cert.pem", "ssl_keyfile": "/tmp/key.pem"}),
    "keep_alive_timeout": (9, {}),
    "max_concurrent_connections": (10, {}),
    "max_requests_per_worker": (100, {}),
    "worker_max_lifetime": (120, {}),
    "worker_max_rss_mib": (256, {}),
    "worker_rss_check_interval": (10, {"worker_max_rss_mib": 256}),
    "max_header_bytes": (9000, {}),
    "max_body_bytes": (1000, {}),
    "body_timeout": (5, {}),
    "worker_timeout": (10, {}),
    "roll_batch": (2, {}),
    "root_path": ("/api", {}),
    "lifespan": ("off", {}),
    "reload": (True, {}),
    "reload_dirs": (["src"], {"reload": True}),
    "reload_includes": (["*.txt"], {"reload": True}),
    "reload_excludes": (["build*"], {"reload": True}),
    "access_log": (True, {}),
    "log_level": ("debug", {}),
    "proxy_headers": (True, {}),
    "forwarded_allow_ips": ("10.0.0.1", {"proxy_headers": True}),
    "granian.runtime_threads": (2, {}),
    "granian.runtime_mode": ("mt", {}),
    "granian.backpressure": (50, {}),
    "granian.respawn_failed_workers": (False, {}),
    "websocket.ping_interval": (5.0, {}),
    "websocket.ping_timeout": (5.0, {}),
    "websocket.max_size": (4096, {}),
    "metrics.port": (9123, {}),
    "access_log_format": ("{method} {path} {request.user-agent}", {}),
    "request_id": (True, {}),
    "metrics.host": ("127.0.0.2", {"metrics.port": 9123}),
}
# A key the server honours by being what it is, with nothing to set: (server, key) -> the sample and why.
NOTHING_TO_SET = {("uvicorn", "http"): ("1", "server.http=2 is refused; 1 and auto are uvicorn's only protocol")}
ADAPTERS = {adapter.name: adapter for adapter in SERVER_ADAPTERS}


def _properties(values: dict[str, Any]) -> ServerProperties:
    groups: dict[str, dict[str, Any]] = {"granian": {}, "websocket": {}, "metrics": {}}
    flat = {}
    for key, value in values.items():
        group, _, name = key.rpartition(".")
        if group:
            groups[group][name] = value
        else:
            flat[key] = value
    return replace(
        ServerProperties(**flat),
        granian=GranianProperties(**groups["granian"]),
        websocket=WebsocketProperties(**groups["websocket"]),
        metrics=MetricsProperties(**groups["metrics"]),
    )


def _settings(adapter: ServerAdapter) -> dict[str, Any]:
    p = adapter.properties
    sources = None
    if p.reload:
        sources = watched_sources(
            dirs=p.reload_dirs, includes=p.reload_includes, excludes=p.reload_excludes, output_dir=None
        )
    settings: dict[str, Any] = adapter.native_settings(Serving(app=APP, loop=LOOP, reload_sources=sources))
    return settings


def test_every_key_has_a_sample_and_a_row_on_every_server() -> None:
    """A row for every key but another server's own group (``server.granian.*`` elsewhere: refused)."""
    keys = set(key_values(ServerProperties()))
    assert set(SAMPLES) == keys
    for adapter in SERVER_ADAPTERS:
        own_groups = {other.name for other in SERVER_ADAPTERS} - {adapter.name}  # server.granian.*: granian's own
        others = {key for key in keys if key.split(".")[0] in own_groups}
        assert set(adapter.support) == keys - others, adapter.name


@pytest.mark.parametrize("server", sorted(ADAPTERS))
@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_a_key_sets_exactly_the_options_its_row_names(server: str, key: str) -> None:
    adapter_class = ADAPTERS[server]
    support = adapter_class.key_support(key)
    value, context = SAMPLES[key]
    value = NOTHING_TO_SET.get((server, key), (value, ""))[0]
    base = adapter_class(properties=_properties(context))
    changed = adapter_class(properties=_properties({**context, key: value}))
    if support.refused is not None:
        with pytest.raises(ConfigError) as refusal:
            changed.check(loop=LOOP)
        assert f"server.{key}=" in str(refusal.value) and support.refused in str(refusal.value)
        return
    changed.check(loop=LOOP)
    before, after = _settings(base), _settings(changed)
    plumbing = {name for name, key in adapter_class.reserved_options.items() if key is None}  # decided by no key
    differing = {n for n in before.keys() | after.keys() if before.get(n) != after.get(n) and n not in plumbing}
    declared = {option.split(".")[0] for option in support.options}
    if (server, key) in NOTHING_TO_SET:
        assert differing == set(), NOTHING_TO_SET[(server, key)][1]
        return
    assert differing == declared, f"{server} server.{key}: row names {declared}, the adapter changed {differing}"
    if support.layer is not None:
        assert (support.layer in changed.layers()) == support.through_layer(value), (server, key)


@pytest.mark.parametrize("server", sorted(ADAPTERS))
def test_the_adapter_passes_no_option_its_table_does_not_declare(server: str) -> None:
    adapter_class = ADAPTERS[server]
    declared = adapter_class.mapped_options()
    everything = {key: value for key, (value, _) in SAMPLES.items() if adapter_class.key_support(key).honoured}
    if server == "uvicorn":
        everything.pop("http")  # 2 is refused (NOTHING_TO_SET)
    for values in ({}, everything):
        passed = set(_settings(adapter_class(properties=_properties(values))))
        assert passed <= declared, f"{server} passes {sorted(passed - declared)} without a row or a reservation"
    constructor = pkgutil.resolve_name(adapter_class.native_constructor)
    keywords = set(constructor_keywords(adapter_class.native_constructor))
    attributes = {*vars(constructor), *getattr(constructor, "__annotations__", {})}  # a class set by attributes
    takes = keywords | (declared & attributes)
    assert declared <= takes, f"{server}: {adapter_class.native_constructor} takes no {sorted(declared - takes)}"
    assert option_names(adapter_class.support) <= declared


def test_every_layer_is_named_by_some_row_and_means_something() -> None:
    used = {support.layer for adapter in SERVER_ADAPTERS for support in adapter.support.values() if support.layer}
    assert used == set(LAYERS), sorted(set(LAYERS) ^ used)


def test_a_reserved_option_names_the_key_that_decides_it(tmp_path: Path) -> None:
    """``+server.options.uvicorn.limit_max_requests``: the owner is found from the table, not from free text."""
    adapter_class = ADAPTERS["uvicorn"]
    options = {"uvicorn": {"limit_max_requests": 5}}
    adapter = adapter_class(properties=replace(ServerProperties(), options=options))
    with pytest.raises(ConfigError, match=r"set server\.max_requests_per_worker instead"):
        adapter.native_options()
