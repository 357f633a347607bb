"""A Litestar app: building it configures logging for the whole process (Litestar's LoggingConfig, applied
with logging.config.dictConfig as the app is created at import)."""

from __future__ import annotations

from litestar import Litestar, get


@get("/health")
async def health() -> str:
    return "ok"


@get("/")
async def index() -> str:
    return "litestar says hello"


app = Litestar(route_handlers=[health, index])
