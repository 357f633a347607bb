"""A hypercorn worker's request count, told to pyfly-hydra's supervisor instead of stopping the worker.

hypercorn's own ``max_requests`` makes a worker stop itself, and only then can a replacement start: a
lone worker leaves new connections waiting in the listen backlog meanwhile. Here the worker tells its
supervisor once it has served its share (``WorkerControl.served``), and the supervisor replaces it as
it does by lifetime: the new worker first, the old one drains once the new one serves. Between the two
the old worker keeps serving, so it retires after about its limit, not exactly at it.

Replaces ``WorkerContext.mark_request`` of ``hypercorn.asyncio.worker_context`` (``hypercorn.trio.worker_context``
on trio; checked on hypercorn 0.17-0.18).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pyfly_hydra.worker.control import WorkerControl

if TYPE_CHECKING:
    from hypercorn.asyncio.worker_context import WorkerContext


def report_request_limit(control: WorkerControl, *, trio: bool) -> None:
    """Patch hypercorn in this worker process: count every request and tell ``control``."""
    module = "hypercorn.trio.worker_context" if trio else "hypercorn.asyncio.worker_context"
    context: type[WorkerContext] = importlib.import_module(module).WorkerContext

    async def mark_request(self: WorkerContext) -> None:
        self.requests += 1
        control.served(self.requests)

    context.mark_request = mark_request  # type: ignore[method-assign]
