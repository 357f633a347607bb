"""A user's own server adapter (docs/guides/environments.md): implements ApplicationServerPort by reusing uvicorn."""

from __future__ import annotations

from typing import ClassVar

from pyfly_hydra.servers.uvicorn.adapter import UvicornServer


class MyServer(UvicornServer):
    """Uvicorn under another name: enough to prove a user adapter gets validation, logging and shutdown."""

    name: ClassVar[str] = "mine"


class NotAServer:
    """Lacks every member of the port."""

    def __init__(self, **properties: object) -> None:
        self.properties = properties
