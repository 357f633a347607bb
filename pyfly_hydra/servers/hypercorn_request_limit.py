"""A hypercorn worker's request count, told to pyfly-hydra's supervisor instead of stopping the worker.

hypercorn's own ``max_requests`` makes a worker stop itself, and only then can a replacement start: a
lone worker leaves new connections waiting in the listen backlog meanwhile. Here the worker sets an
event once it has served its share, and the supervisor replaces it as it does by lifetime: the new
worker first, the old one drains once the new one serves. Between the two the old worker keeps
serving, so it retires after about its limit, not exactly at it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypercorn.asyncio.worker_context import WorkerContext

REQUESTS_JITTER = 0.10  # a worker serves server.max_requests_per_worker x (1 + up to this)


@dataclass(frozen=True)
class RequestLimit:
    """One worker's request limit (jitter included) and the event it sets on reaching it."""

    requests: int
    reached: Event

    @staticmethod
    def drawn(limit: int, reached: Event) -> RequestLimit:
        """``limit`` plus up to ``REQUESTS_JITTER`` more, so workers started together retire apart."""
        return RequestLimit(limit + random.randint(0, int(limit * REQUESTS_JITTER)), reached)


def report_request_limit(limit: RequestLimit) -> None:
    """Patch hypercorn in this worker process: count every request, and set ``limit.reached`` at the limit."""
    from hypercorn.asyncio.worker_context import WorkerContext

    async def mark_request(self: WorkerContext) -> None:
        self.requests += 1
        if self.requests == limit.requests:
            limit.reached.set()

    WorkerContext.mark_request = mark_request  # type: ignore[method-assign]
