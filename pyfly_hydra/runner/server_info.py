"""ServerInfo: what actually ran, for the startup log line and the run's output directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServerInfo:
    """The resolved choices of one run."""

    app: str
    interface: str  # asgi | wsgi, as served (auto resolved)
    server: str
    version: str
    loop: str
    workers: int
    http: str
    host: str
    port: int
    tls: bool
    uds: str | None = None  # listening on this unix socket instead of host:port
    fd: int | None = None  # listening on this inherited socket instead of host:port
    from_environment: dict[str, str] = field(default_factory=dict)  # key (or group) -> the variable that set it

    @property
    def url(self) -> str:
        """Where the server listens, as a browser would open it (``unix:PATH`` or ``fd://N`` otherwise)."""
        if self.uds is not None:
            return f"unix:{self.uds}"
        if self.fd is not None:
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def log_line(self) -> str:
        """The one startup line: app, server, loop, workers, http, URL."""
        return (
            f"serving {self.app} ({self.interface}) on {self.server} {self.version}"
            f" (loop {self.loop}, workers {self.workers}, http {self.http}, tls {'on' if self.tls else 'off'})"
            f" at {self.url}"
        )

    def write(self, directory: Path) -> Path:
        """Record this run as ``server_info.json`` in ``directory``."""
        path = directory / "server_info.json"
        path.write_text(json.dumps({**asdict(self), "url": self.url}, indent=2) + "\n")
        return path
