"""Environment variables the servers' own command lines read, which pyfly-hydra does not: never silently.

``uvicorn`` reads ``UVICORN_*``, ``granian`` ``GRANIAN_*``, and platforms set ``WEB_CONCURRENCY``. pyfly-hydra
takes its settings from the composed configuration only, where a variable arrives through an interpolation
(``'server.workers=${oc.env:WEB_CONCURRENCY,1}'``). One that is set but named by no ``oc.env`` in the
configuration is said in one notice line, with the key it would set.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger("pyfly_hydra")

# The variables users set for these servers, and the key each one means here.
SERVER_VARIABLES: dict[str, str] = {
    "WEB_CONCURRENCY": "server.workers",
    "UVICORN_WORKERS": "server.workers",
    "GRANIAN_WORKERS": "server.workers",
    "UVICORN_HOST": "server.host",
    "GRANIAN_HOST": "server.host",
    "UVICORN_PORT": "server.port",
    "GRANIAN_PORT": "server.port",
}


def unused_variables(cfg: DictConfig, environ: Mapping[str, str]) -> list[str]:
    """The server variables set in ``environ`` that no ``${oc.env:NAME}`` of ``cfg`` reads."""
    text = OmegaConf.to_yaml(cfg)  # unresolved: the interpolations as written
    return [name for name in SERVER_VARIABLES if name in environ and not re.search(rf"oc\.env:\s*['\"]?{name}\b", text)]


def notice_unused_variables(cfg: DictConfig) -> None:
    """One notice line naming the server variables this run ignores, and how to read one."""
    unused = unused_variables(cfg, os.environ)
    if not unused:
        return
    listed = ", ".join(f"{name}={os.environ[name]}" for name in unused)
    first = unused[0]
    logger.warning(
        "notice: %s %s not read: pyfly-hydra takes settings from its configuration only;"
        " to use %s, set '%s=${oc.env:%s}'",
        listed,
        "is" if len(unused) == 1 else "are",
        "it" if len(unused) == 1 else "one",
        SERVER_VARIABLES[first],
        first,
    )
