"""uvicorn's multiprocess supervisor, closing its own copy of the listener before it stops the workers.

uvicorn's parent keeps the listening socket open until every worker has drained, so after SIGTERM
the kernel still completes new connections that no worker will ever accept: they hang until the
drain ends. Closing the parent's copy first (each worker closes its own at once) refuses them.
"""

from __future__ import annotations

from uvicorn.supervisors import Multiprocess


class ClosingMultiprocess(Multiprocess):
    """Multiprocess that refuses new connections as soon as it starts stopping."""

    def terminate_all(self) -> None:
        """Close the listening sockets, then ask the workers to drain and stop."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()
