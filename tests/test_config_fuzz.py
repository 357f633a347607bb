"""Hostile values for every server.* key: a clean one-line error naming the key, or a value we checked.

In process for every key x value (Hydra's override parser and OmegaConf's update on the composed
config, as Hydra applies a command-line override, then the checks `mode=serve` runs before any server
starts), and a seeded sample through the real command line.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import random
import re
import socket
import stat
import string
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from pyfly_hydra.cli import CONFIG_DIR
from pyfly_hydra.config.messages import describe
from pyfly_hydra.config.properties import HTTP_VERSIONS, LOG_LEVELS
from pyfly_hydra.config.schema import GranianProperties, MetricsProperties, ServerProperties, WebsocketProperties
from pyfly_hydra.runner.serve import make_plan
from pyfly_hydra.system.bind import check_listener
from tests.conftest import assert_one_line_error, run_cli

SEED = 20261124
HOSTILE = [
    "''", "' '", "-1", "0", "1", "65536", "99999999999999999999", "1e309", "-0.5", "nan", "true", "null",
    "[1,2]", "{a: 1}", "'💥'", "'ünïcödé'", "/etc/shadow", "../../../etc/passwd", "'0.0.0.0; rm -rf /'",
    "'${oc.env:HOME}'", "'%s%s%n'", "'\\\\x00'", "2147483648", "'auto'", "'*'",
]  # fmt: skip
RANDOM_TEXT = "".join(chr(c) for c in (*range(33, 127), 0x2603, 0x1F4A5, 0x00E9, 0x4E2D))


def random_values(count: int) -> list[str]:
    rng = random.Random(SEED)
    values = []
    for _ in range(count):
        text = "".join(rng.choice(RANDOM_TEXT) for _ in range(rng.randint(1, 12))).replace("'", "")
        values.append(f"'{text.replace(chr(92), '')}'")
        values.append(str(rng.choice([-(2**40), -7, 3, 70000, 2**33, 10**18])))
    return values


def _is_int(low: int, high: int, *, optional: bool = False) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if value is None:
            return optional
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    return check


def _file(value: Any) -> bool:
    return value is None or (isinstance(value, str) and os.path.isfile(value) and os.access(value, os.R_OK))


def _host(value: Any) -> bool:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return False
    try:
        socket.getaddrinfo(value, 0)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def _allow_ips(value: Any) -> bool:
    items = [item.strip() for item in str(value).split(",") if item.strip()]
    try:
        return bool(items) and all(item == "*" or ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError:
        return False


def _socket_path(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    path = os.path.abspath(value)
    free = not os.path.lexists(path) or stat.S_ISSOCK(os.lstat(path).st_mode)
    return os.path.isdir(os.path.dirname(path)) and len(os.fsencode(path)) < 104 and free


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


def _patterns(*, required: bool) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        items = list(value) if isinstance(value, ListConfig) else None
        return items is not None and (bool(items) or not required) and all(str(i).strip() for i in items)

    return check


def _access_format(value: Any) -> bool:
    """None, or text whose {fields} are the access log's own or headers, without a !conversion."""
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    fields = {"client", "method", "path", "query", "protocol", "status", "bytes", "duration_ms", "pid"}
    try:
        pieces = list(string.Formatter().parse(value))
    except ValueError:
        return False
    return all(
        name is None or (conversion is None and (name in fields or re.fullmatch(r"(request|response)\.[\w-]+", name)))
        for _, name, _, conversion in pieces
    )  # {request_id} needs server.request_id=true, which the fuzzed default is not


def _dirs(value: Any) -> bool:
    return isinstance(value, ListConfig) and all(os.path.isdir(str(item)) for item in value)


# The integer keys' bounds on granian (the fuzzed server), written out here rather than read from
# pyfly_hydra.config.properties, so that a bound moved there is a failure here.
BOUNDS: dict[str, tuple[int, int]] = {
    "port": (1, 65535),
    "workers": (0, 1024),
    "backlog": (1, 65535),
    "graceful_timeout": (0, 86400),
    "keep_alive_timeout": (1, 3600),
    "max_concurrent_connections": (1, 2**31 - 1),
    "worker_max_lifetime": (60, 86400),  # granian's shortest lifetime is 60 s
    "worker_max_rss_mib": (1, 2**20),
    "worker_rss_check_interval": (1, 86400),
    "max_header_bytes": (8192, 16 * 1024 * 1024),
    "max_body_bytes": (1, 2**40),
    "body_timeout": (1, 86400),
    "worker_timeout": (1, 86400),
    "roll_batch": (1, 1024),
    "granian.runtime_threads": (1, 256),
    "granian.backpressure": (1, 2**31 - 1),
}


def _bounded(key: str, *, optional: bool = False) -> Callable[[Any], bool]:
    return _is_int(*BOUNDS[key], optional=optional)


# The independent oracle: what each key may hold for a server to start with it.
VALID: dict[str, Callable[[Any], bool]] = {
    "host": _host,
    "port": _bounded("port"),
    "workers": _bounded("workers"),
    "backlog": _bounded("backlog"),
    "graceful_timeout": _bounded("graceful_timeout"),
    "http": lambda v: v in HTTP_VERSIONS and v != "3",  # granian serves no HTTP/3
    "ssl_certfile": _file,
    "ssl_keyfile": _file,
    "keep_alive_timeout": _bounded("keep_alive_timeout"),
    "max_concurrent_connections": _bounded("max_concurrent_connections", optional=True),
    "max_requests_per_worker": lambda v: v is None,  # granian refuses the key
    "worker_max_lifetime": _bounded("worker_max_lifetime", optional=True),
    "worker_max_rss_mib": _bounded("worker_max_rss_mib", optional=True),
    "worker_rss_check_interval": _bounded("worker_rss_check_interval"),
    "max_header_bytes": _bounded("max_header_bytes", optional=True),
    "max_body_bytes": _bounded("max_body_bytes", optional=True),
    "body_timeout": _bounded("body_timeout", optional=True),
    "worker_timeout": _bounded("worker_timeout", optional=True),
    "roll_batch": _bounded("roll_batch"),
    "lifespan": lambda v: v in ("auto", "on", "off"),
    "uds": lambda v: v is None or _socket_path(v),
    "uds_permissions": lambda v: v is None,  # needs server.uds
    "uds_group": lambda v: v is None,  # needs server.uds
    "fd": lambda v: v is None,  # no hostile number is a listening socket of the test process
    "root_path": lambda v: v == "" or (isinstance(v, str) and v.startswith("/") and not v.endswith("/")),
    "reload": _bool,
    "reload_dirs": _dirs,
    "reload_includes": _patterns(required=True),
    "reload_excludes": _patterns(required=False),
    "access_log": _bool,
    "access_log_format": _access_format,
    "request_id": _bool,
    "log_level": lambda v: v in LOG_LEVELS,
    "proxy_headers": _bool,
    "forwarded_allow_ips": _allow_ips,
    "websocket.ping_interval": lambda v: v is None,  # granian, the fuzzed server, has no websocket settings
    "websocket.ping_timeout": lambda v: v is None,
    "websocket.max_size": lambda v: v is None,
    # The admin listener: never the app's port (8000 in the fuzzed config); its host is resolved when it binds.
    "metrics.port": lambda v: v is None or (_is_int(1, 65535)(v) and v != 8000),
    "metrics.host": lambda v: isinstance(v, str) and bool(v) and not any(c.isspace() for c in v),
    "granian.runtime_threads": _bounded("granian.runtime_threads"),
    "granian.runtime_mode": lambda v: v in ("auto", "st", "mt"),
    "granian.backpressure": _bounded("granian.backpressure", optional=True),
    "granian.respawn_failed_workers": _bool,
}
KEYS = (
    [f.name for f in fields(ServerProperties) if f.name not in ("granian", "options", "websocket", "metrics")]
    + [f"websocket.{f.name}" for f in fields(WebsocketProperties)]
    + [f"metrics.{f.name}" for f in fields(MetricsProperties)]
    + [f"granian.{f.name}" for f in fields(GranianProperties)]
)


def test_the_oracle_covers_every_key() -> None:
    assert sorted(VALID) == sorted(KEYS)


@pytest.fixture(scope="module")
def base_config() -> Iterator[DictConfig]:
    """The composed default config with server=granian (composing takes ~80 ms; overriding ~1 ms)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        yield compose("config", overrides=["server=granian"])


def checked_value(base: DictConfig, override: str) -> Any:
    """Apply ``override`` as Hydra does and check as `mode=serve` does; return the value, or raise."""
    (parsed,) = OverridesParser.create().parse_overrides([override])
    cfg = copy.deepcopy(base)
    OmegaConf.update(cfg, parsed.key_or_group, parsed.value(), merge=True)
    plan = make_plan(cfg)
    check_listener(host=plan.info.host, port=0, uds=plan.info.uds, fd=plan.info.fd)
    node: Any = cfg.server
    key = override.split("=", 1)[0].removeprefix("server.")
    for part in key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("key", KEYS)
def test_hostile_values_in_process(base_config: DictConfig, key: str) -> None:
    for value in [*HOSTILE, *random_values(6)]:
        override = f"server.{key}={value}"
        try:
            composed = checked_value(base_config, override)
        except Exception as error:
            message, code = describe(error)
            assert "\n" not in message and message, (override, message)
            assert code == 2, (override, message)
            assert f"server.{key}" in message or override.split("=")[0] in message, (override, message)
            continue
        assert VALID[key](composed), f"{override} was accepted as {composed!r}, which no server should start with"


@pytest.mark.parametrize("key", BOUNDS)
def test_each_bound_is_accepted_and_one_past_it_refused(base_config: DictConfig, key: str) -> None:
    """Both ends of each range: the bound itself starts, one past it is a one-line error naming the key."""
    low, high = BOUNDS[key]
    for value in (low, high):
        assert checked_value(base_config, f"server.{key}={value}") == value
    for value in (low - 1, high + 1):
        with pytest.raises(Exception) as refused:
            checked_value(base_config, f"server.{key}={value}")
        message, code = describe(refused.value)
        assert code == 2 and f"server.{key}" in message and "\n" not in message, (value, message)


@pytest.mark.parametrize(("key", "value"), [("workers", 1025), ("keep_alive_timeout", 3601), ("port", 65536)])
def test_one_past_a_bound_is_refused_on_the_command_line(key: str, value: int) -> None:
    """An app that cannot be imported: were the value let through, the run fails at once on the app (a
    different line), rather than starting 1025 workers."""
    result = run_cli("server=granian", f"server.{key}={value}", "app=no_such_module:app", timeout=30)
    assert_one_line_error(result, f"server.{key}={value}", "must be")


def rejected(base: DictConfig, override: str) -> bool:
    try:
        checked_value(base, override)
    except Exception:
        return True
    return False


@pytest.mark.slow
def test_hostile_values_through_the_command_line(base_config: DictConfig) -> None:
    rng = random.Random(SEED)
    cases = [(key, value) for key in KEYS for value in HOSTILE]
    rng.shuffle(cases)
    for key, value in [(k, v) for k, v in cases if rejected(base_config, f"server.{k}={v}")][:10]:
        result = run_cli("server=granian", f"server.{key}={value}")
        output = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        assert result.returncode != 0, (key, value, output)
        assert "Traceback" not in result.stderr, (key, value, result.stderr)
        assert len(output) == 1 and output[0].startswith("pyfly-hydra: error: "), (key, value, output)
