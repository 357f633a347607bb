"""Event loops for uvicorn over TLS: the standard ones, with a TLS handshake deadline.

uvicorn creates its listeners with ``loop.create_server(..., ssl=...)`` and no handshake timeout, so
asyncio's and uvloop's default applies: a client that opens a TLS connection and sends nothing holds
it for 60 s. With TLS on, pyfly-hydra hands uvicorn these factories (``loop="module:factory"``, which
uvicorn calls in every worker) instead of the loop's name: the same loop class, whose
``create_server`` gives TLS listeners the 10 s deadline granian has.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pyfly_hydra.servers import TLS_HANDSHAKE_SECONDS


def _with_handshake_deadline(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    create_server = loop.create_server

    async def create_server_with_deadline(*args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", TLS_HANDSHAKE_SECONDS)
        return await create_server(*args, **kwargs)

    loop.create_server = create_server_with_deadline  # type: ignore[method-assign]
    return loop


def uvloop_loop() -> asyncio.AbstractEventLoop:
    """A ``uvloop.Loop`` whose TLS listeners time out handshakes after 10 s."""
    import uvloop

    return _with_handshake_deadline(uvloop.new_event_loop())


def asyncio_loop() -> asyncio.AbstractEventLoop:
    """The standard loop, whose TLS listeners time out handshakes after 10 s."""
    return _with_handshake_deadline(asyncio.new_event_loop())


TLS_LOOP_FACTORIES = {
    "uvloop": "pyfly_hydra.servers.uvicorn.loops:uvloop_loop",
    "asyncio": "pyfly_hydra.servers.uvicorn.loops:asyncio_loop",
}
